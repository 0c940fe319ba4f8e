package bench

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
)

// Placement is how a benchmark user's permitted rows sit in the vector
// space; filtered-ANN results change with it.
type Placement string

const (
	// Everyone is the 100% cell: every row carries the group.
	Everyone Placement = "all"
	// Uncorrelated permits rows at random, whatever their cluster.
	Uncorrelated Placement = "uncorrelated"
	// Aligned permits whole clusters (a team's own documents).
	Aligned Placement = "aligned"
	// AntiCorrelated permits the rows queries are least likely to land near:
	// the clusters the queries hit least, outliers first.
	AntiCorrelated Placement = "anti-correlated"
)

// Placements are the three ways a selective ACL is laid out.
var Placements = []Placement{Uncorrelated, Aligned, AntiCorrelated}

// Selectivities below 100%, each a user's share of the rows.
var Selectivities = []float64{0.10, 0.01, 0.001}

// Group names the ACL group a user of that cell belongs to.
func Group(p Placement, sel float64) string {
	if p == Everyone {
		return "everyone"
	}
	return fmt.Sprintf("%s-%g", p, sel*100)
}

// DataConfig sizes the generated dataset.
type DataConfig struct {
	Rows      int
	Queries   int // held-out query vectors
	Dimension int
	Clusters  int
	// Zipf is the exponent of the cluster sizes (size of the i-th cluster
	// proportional to 1/i^Zipf).
	Zipf float64
	// Latent is the dimension of the space the mixture lives in before a
	// random rotation into Dimension: real embeddings have a low intrinsic
	// dimension, which is what makes HNSW recall what it is on them.
	Latent int
	// Spread is the within-cluster standard deviation relative to the
	// distance between cluster centres; Noise is isotropic noise in the full
	// space. Both tune unfiltered recall@10 at the default ef_search.
	Spread, Noise float64
	Seed          uint64
}

// Dataset is the generated rows, queries and per-row ACL groups.
type Dataset struct {
	Config  DataConfig
	Vectors [][]float32 // Vectors[i] is row i+1's embedding (unit length)
	Queries [][]float32
	Cluster []int      // Cluster[i] is row i+1's cluster
	ACL     [][]string // ACL[i] is row i+1's groups
}

// Generate builds a Gaussian mixture on the unit sphere with Zipf-sized
// clusters, held-out queries drawn from the same mixture, and ACL groups for
// every placement and selectivity. It is deterministic in cfg.Seed.
func Generate(cfg DataConfig) *Dataset {
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x5eed))
	proj := gaussianMatrix(rng, cfg.Latent, cfg.Dimension, 1/math.Sqrt(float64(cfg.Latent)))
	centres := make([][]float64, cfg.Clusters)
	for i := range centres {
		centres[i] = gaussianVec(rng, cfg.Latent, 1)
	}
	pick := zipfPicker(cfg.Clusters, cfg.Zipf)
	d := &Dataset{Config: cfg}
	sample := func() ([]float32, int) {
		c := pick(rng.Float64())
		lat := make([]float64, cfg.Latent)
		for j := range lat {
			lat[j] = centres[c][j] + cfg.Spread*rng.NormFloat64()
		}
		return project(rng, proj, lat, cfg.Noise), c
	}
	d.Vectors = make([][]float32, cfg.Rows)
	d.Cluster = make([]int, cfg.Rows)
	for i := range d.Vectors {
		d.Vectors[i], d.Cluster[i] = sample()
	}
	queryCluster := make([]int, cfg.Queries)
	d.Queries = make([][]float32, cfg.Queries)
	for i := range d.Queries {
		d.Queries[i], queryCluster[i] = sample()
	}
	d.ACL = acls(rng, d, centres, queryCluster)
	return d
}

// acls gives every row the "everyone" group plus, for each placement and
// selectivity, that cell's group when the row ranks within the cell's share.
// Ranks are exact, so a cell's user sees exactly round(sel*rows) rows.
func acls(rng *rand.Rand, d *Dataset, centres [][]float64, queryCluster []int) [][]string {
	n := len(d.Vectors)
	out := make([][]string, n)
	for i := range out {
		out[i] = []string{Group(Everyone, 1)}
	}
	for _, p := range Placements {
		order := rowOrder(rng, p, d, queryCluster)
		for _, sel := range Selectivities {
			take := int(math.Round(sel * float64(n)))
			for _, row := range order[:take] {
				out[row] = append(out[row], Group(p, sel))
			}
		}
	}
	return out
}

// rowOrder ranks the rows for a placement: the first sel*n are permitted.
func rowOrder(rng *rand.Rand, p Placement, d *Dataset, queryCluster []int) []int {
	n := len(d.Vectors)
	order := rng.Perm(n)
	switch p {
	case Aligned:
		rank := rng.Perm(d.Config.Clusters) // clusters in random order
		sort.SliceStable(order, func(a, b int) bool {
			return rank[d.Cluster[order[a]]] < rank[d.Cluster[order[b]]]
		})
	case AntiCorrelated:
		hits := make([]int, d.Config.Clusters)
		for _, c := range queryCluster {
			hits[c]++
		}
		size := make([]int, d.Config.Clusters)
		for _, c := range d.Cluster {
			size[c]++
		}
		sort.SliceStable(order, func(a, b int) bool {
			ca, cb := d.Cluster[order[a]], d.Cluster[order[b]]
			return cmp.Or(cmp.Compare(hits[ca], hits[cb]), cmp.Compare(size[ca], size[cb]), cmp.Compare(ca, cb)) < 0
		})
	}
	return order
}

// zipfPicker maps a uniform u in [0,1) to a cluster with probability
// proportional to 1/(i+1)^s.
func zipfPicker(n int, s float64) func(u float64) int {
	cum := make([]float64, n)
	total := 0.0
	for i := range cum {
		total += 1 / math.Pow(float64(i+1), s)
		cum[i] = total
	}
	return func(u float64) int {
		i, _ := slices.BinarySearch(cum, u*total)
		return min(i, n-1)
	}
}

func gaussianVec(rng *rand.Rand, n int, scale float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = scale * rng.NormFloat64()
	}
	return v
}

func gaussianMatrix(rng *rand.Rand, rows, cols int, scale float64) [][]float64 {
	m := make([][]float64, rows)
	for i := range m {
		m[i] = gaussianVec(rng, cols, scale)
	}
	return m
}

// project maps a latent point into the full space, adds isotropic noise
// and normalises onto the unit sphere.
func project(rng *rand.Rand, proj [][]float64, lat []float64, noise float64) []float32 {
	dim := len(proj[0])
	out := make([]float64, dim)
	for i, x := range lat {
		for j, p := range proj[i] {
			out[j] += x * p
		}
	}
	norm := 0.0
	for j := range out {
		out[j] += noise * rng.NormFloat64() / math.Sqrt(float64(dim))
		norm += out[j] * out[j]
	}
	norm = math.Sqrt(norm)
	v := make([]float32, dim)
	for j := range out {
		v[j] = float32(out[j] / norm)
	}
	return v
}
