package bench

import (
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
	"time"
)

func smallData() DataConfig {
	return DataConfig{Rows: 20_000, Queries: 50, Dimension: 32, Clusters: 40, Zipf: 1, Latent: 8, Spread: 0.7, Noise: 0.3, Seed: 7}
}

// Every cell's user sees exactly its share of the rows, the smaller shares
// of a placement are inside the larger ones, and the data is deterministic.
func TestGenerateSelectivities(t *testing.T) {
	cfg := smallData()
	d := Generate(cfg)
	count := map[string]int{}
	for _, acl := range d.ACL {
		for _, g := range acl {
			count[g]++
		}
	}
	if count[Group(Everyone, 1)] != cfg.Rows {
		t.Errorf("everyone group on %d rows, want %d", count[Group(Everyone, 1)], cfg.Rows)
	}
	for _, p := range Placements {
		for _, sel := range Selectivities {
			want := int(math.Round(sel * float64(cfg.Rows)))
			if got := count[Group(p, sel)]; got != want {
				t.Errorf("%s: %d rows, want %d", Group(p, sel), got, want)
			}
		}
		for i, acl := range d.ACL {
			if slices.Contains(acl, Group(p, 0.001)) && !slices.Contains(acl, Group(p, 0.1)) {
				t.Fatalf("row %d is in %s but not in %s", i+1, Group(p, 0.001), Group(p, 0.1))
			}
		}
	}
	again := Generate(cfg)
	if !slices.Equal(d.Vectors[123], again.Vectors[123]) || !slices.Equal(d.ACL[456], again.ACL[456]) {
		t.Error("Generate is not deterministic in its seed")
	}
	for _, v := range d.Vectors[:10] {
		if n := math.Sqrt(dot(v, v)); math.Abs(n-1) > 1e-4 {
			t.Errorf("vector norm %v, want 1", n)
		}
	}
}

// The aligned placement permits whole clusters (but for the one cut at the
// boundary); the uncorrelated one spreads over most clusters.
func TestPlacementsDiffer(t *testing.T) {
	d := Generate(smallData())
	clustersOf := func(g string) int {
		seen := map[int]bool{}
		for i, acl := range d.ACL {
			if slices.Contains(acl, g) {
				seen[d.Cluster[i]] = true
			}
		}
		return len(seen)
	}
	aligned, uncorrelated := clustersOf(Group(Aligned, 0.1)), clustersOf(Group(Uncorrelated, 0.1))
	if aligned >= uncorrelated {
		t.Errorf("aligned 10%% spans %d clusters, uncorrelated %d: aligned should span fewer", aligned, uncorrelated)
	}
}

// Truth agrees with a plain sort of every permitted row by similarity.
func TestTruthMatchesSort(t *testing.T) {
	cfg := smallData()
	cfg.Rows = 3000
	d := Generate(cfg)
	cells := Cells("t")
	truth := Truth(d, d.Queries[:5], cells)
	for c, u := range cells {
		g := Group(u.Placement, u.Selectivity)
		for qi, q := range d.Queries[:5] {
			var rows []int
			for i, acl := range d.ACL {
				if slices.Contains(acl, g) {
					rows = append(rows, i)
				}
			}
			sort.SliceStable(rows, func(a, b int) bool { return dot(d.Vectors[rows[a]], q) > dot(d.Vectors[rows[b]], q) })
			want := make([]int64, 0, K)
			for _, r := range rows[:min(K, len(rows))] {
				want = append(want, int64(r+1))
			}
			if !slices.Equal(truth[c][qi], want) {
				t.Errorf("%s query %d: truth %v, sorted %v", g, qi, truth[c][qi], want)
			}
		}
	}
}

func TestScore(t *testing.T) {
	u := NewUser("t", Uncorrelated, 0.1)
	truth := [][]int64{{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, {1, 2, 3}, {}}
	got := [][]int64{{1, 2, 3, 4, 5, 6, 7, 8, 11, 12}, {3, 2, 1}, {}}
	lat := []time.Duration{time.Millisecond, 2 * time.Millisecond, 3 * time.Millisecond}
	r := score(Ragfence, u, got, truth, lat)
	if want := (0.8 + 1 + 1) / 3; math.Abs(r.Recall-want) > 1e-9 {
		t.Errorf("recall %v, want %v", r.Recall, want)
	}
	if r.Short != 0 {
		t.Errorf("short %v: only 3 rows were permitted for query 2", r.Short)
	}
	got[0] = got[0][:9]
	if r := score(Ragfence, u, got, truth, lat); math.Abs(r.Short-1.0/3) > 1e-9 {
		t.Errorf("short %v, want 1/3", r.Short)
	}
	if r.P50 != 2 || r.P99 != 3 {
		t.Errorf("p50 %v p99 %v, want 2 and 3", r.P50, r.P99)
	}
}

func TestPercentile(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	lat := make([]time.Duration, 1000)
	for i := range lat {
		lat[i] = time.Duration(i+1) * time.Millisecond
	}
	rng.Shuffle(len(lat), func(i, j int) { lat[i], lat[j] = lat[j], lat[i] })
	for _, c := range []struct{ p, want float64 }{{50, 500}, {95, 950}, {99, 990}, {100, 1000}} {
		if got := percentile(lat, c.p); got != c.want {
			t.Errorf("p%v = %v, want %v", c.p, got, c.want)
		}
	}
}

// The CI gate fails on recall and short results, never on latency.
func TestRecallFailures(t *testing.T) {
	results := []Result{
		{Strategy: Unfiltered, Placement: "aligned", Selectivity: 0.1, P50: 1},
		{Strategy: Ragfence, Placement: "aligned", Selectivity: 0.1, Recall: 0.99, P50: 5},
		{Strategy: Unfiltered, Placement: "aligned", Selectivity: 0.01, P50: 1},
		{Strategy: Ragfence, Placement: "aligned", Selectivity: 0.01, Recall: 0.97, Short: 0.01, P50: 1},
	}
	failed := RecallFailures(Checks(results))
	if len(failed) != 2 {
		t.Fatalf("failures %v, want recall and short results at 1%%", failed)
	}
	for _, c := range failed {
		if c.Selectivity != 0.01 {
			t.Errorf("unexpected failure %v", c)
		}
	}
	var latency int
	for _, c := range Checks(results) {
		if c.What == "p50 / unfiltered p50" && !c.Met() {
			latency++
		}
	}
	if latency != 1 {
		t.Errorf("%d latency checks missed, want 1 (5x at 10%%)", latency)
	}
}
