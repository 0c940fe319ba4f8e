package bench

import (
	"cmp"
	"runtime"
	"slices"
	"sync"
)

// Truth computes, independently of PostgreSQL, every cell's exact top K
// for every query: the rows the cell's user may see (their ACL holds the
// cell's group), nearest first by cosine distance. It is the ground truth
// recall is measured against; the database's exact strategy is measured
// against it too. truth[c][q] belongs to cells[c] and queries[q].
func Truth(d *Dataset, queries [][]float32, cells []User) [][][]int64 {
	permitted := make([][]bool, len(cells))
	for c, u := range cells {
		permitted[c] = make([]bool, len(d.Vectors))
		g := Group(u.Placement, u.Selectivity)
		for i, acl := range d.ACL {
			permitted[c][i] = slices.Contains(acl, g)
		}
	}
	truth := make([][][]int64, len(cells))
	for c := range truth {
		truth[c] = make([][]int64, len(queries))
	}
	var wg sync.WaitGroup
	next := make(chan int)
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sims := make([]float64, len(d.Vectors))
			for qi := range next {
				for i, v := range d.Vectors {
					sims[i] = dot(v, queries[qi])
				}
				for c := range cells {
					truth[c][qi] = topK(sims, permitted[c])
				}
			}
		}()
	}
	for qi := range queries {
		next <- qi
	}
	close(next)
	wg.Wait()
	return truth
}

// topK returns the ids (row index + 1) of the K most similar permitted rows.
func topK(sims []float64, permitted []bool) []int64 {
	type hit struct {
		row int
		sim float64
	}
	best := make([]hit, 0, K+1)
	worse := func(a, b hit) int { return cmp.Or(cmp.Compare(b.sim, a.sim), cmp.Compare(a.row, b.row)) }
	for i, s := range sims {
		if !permitted[i] || (len(best) == K && s <= best[K-1].sim) {
			continue
		}
		best = append(best, hit{i, s})
		slices.SortFunc(best, worse)
		best = best[:min(len(best), K)]
	}
	out := make([]int64, len(best))
	for i, h := range best {
		out[i] = int64(h.row + 1)
	}
	return out
}

// dot is the cosine similarity of two unit vectors.
func dot(a, b []float32) float64 {
	var s0, s1, s2, s3 float32
	n := len(a) &^ 3
	for i := 0; i < n; i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for i := n; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return float64(s0 + s1 + s2 + s3)
}
