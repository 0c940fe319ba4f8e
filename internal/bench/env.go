package bench

import (
	"bufio"
	"context"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Machine is where a run happened and with what settings, recorded with
// its results so numbers are never compared across different setups
// unknowingly.
type Machine struct {
	CPU        string            `json:"cpu"`
	Cores      int               `json:"cores"`
	MemoryGiB  float64           `json:"memory_gib"`
	GoVersion  string            `json:"go"`
	OS         string            `json:"os"`
	PostgreSQL string            `json:"postgresql"`
	PGVector   string            `json:"pgvector"`
	Settings   map[string]string `json:"settings"`
}

// settingNames are the server settings that move the numbers.
var settingNames = []string{
	"shared_buffers", "work_mem", "effective_cache_size", "random_page_cost",
	"max_parallel_workers_per_gather", "jit", "hnsw.ef_search", "hnsw.iterative_scan",
	"hnsw.max_scan_tuples",
}

// Describe reads the machine and the server.
func Describe(ctx context.Context, pool *pgxpool.Pool) (Machine, error) {
	m := Machine{Cores: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH,
		CPU: procField("/proc/cpuinfo", "model name"), Settings: map[string]string{}}
	if kb, err := strconv.ParseFloat(strings.TrimSuffix(procField("/proc/meminfo", "MemTotal"), " kB"), 64); err == nil {
		m.MemoryGiB = math.Floor(kb/1024/1024*10) / 10
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return m, err
	}
	defer conn.Release()
	// Using the type loads pgvector's library, which defines its settings.
	err = conn.QueryRow(ctx, `SELECT current_setting('server_version'), '[1]'::vector IS NOT NULL,
		(SELECT extversion FROM pg_extension WHERE extname = 'vector')`).Scan(&m.PostgreSQL, new(bool), &m.PGVector)
	if err != nil {
		return m, err
	}
	for _, name := range settingNames {
		var v string
		if err := conn.QueryRow(ctx, "SELECT coalesce(current_setting($1, true), '(unset)')", name).Scan(&v); err != nil {
			return m, err
		}
		m.Settings[name] = v
	}
	return m, nil
}

// procField returns the first "name: value" line's value in a /proc file.
func procField(path, name string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == name {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
