package service

import (
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the service's Prometheus metrics.
type metrics struct {
	latency   *prometheus.HistogramVec
	rows      prometheus.Histogram
	decisions *prometheus.CounterVec
	plans     *prometheus.CounterVec
	// guardrailEvents counts each guardrail's triggered actions.
	guardrailEvents *prometheus.CounterVec
}

func newMetrics(reg *prometheus.Registry, pool *pgxpool.Pool, audit AuditLog) *metrics {
	m := &metrics{
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ragfence_retrieve_duration_seconds",
			Help:    "Latency of POST /v1/retrieve, by outcome.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"outcome"}),
		rows: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ragfence_retrieve_rows",
			Help:    "Rows returned per allowed retrieval.",
			Buckets: []float64{0, 1, 2, 5, 10, 20, 50, 100},
		}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ragfence_decisions_total",
			Help: "Authorization decisions, by outcome.",
		}, []string{"outcome"}),
		plans: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ragfence_search_plans_total",
			Help: "Searches by plan: exact (permitted rows read and sorted) or index (iterative HNSW walk).",
		}, []string{"plan"}),
		guardrailEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ragfence_guardrail_events_total",
			Help: "Guardrail triggers, by guardrail and action (throttle, cap, suspend, alert).",
		}, []string{"guardrail", "action"}),
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	reg.MustRegister(m.latency, m.rows, m.decisions, m.plans, m.guardrailEvents,
		gauge("ragfence_audit_queue_depth", "Audit records waiting to be written.", func() float64 { return float64(audit.Depth()) }),
		gauge("ragfence_db_pool_acquired_conns", "Database connections in use.", func() float64 { return float64(pool.Stat().AcquiredConns()) }),
		gauge("ragfence_db_pool_idle_conns", "Idle database connections.", func() float64 { return float64(pool.Stat().IdleConns()) }),
		gauge("ragfence_db_pool_total_conns", "Open database connections.", func() float64 { return float64(pool.Stat().TotalConns()) }),
		gauge("ragfence_db_pool_max_conns", "Maximum database connections.", func() float64 { return float64(pool.Stat().MaxConns()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ragfence_db_pool_empty_acquire_total", Help: "Acquires that waited for a connection."},
			func() float64 { return float64(pool.Stat().EmptyAcquireCount()) }),
	)
	return m
}
