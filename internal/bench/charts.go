package bench

import (
	"fmt"
	"math"
	"os"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// WriteCharts draws recall.png (recall@10) and latency.png (p50, log
// scale) against selectivity, one panel per placement, into dir.
func WriteCharts(dir string, r *Report) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	recall := func(x Result) float64 { return x.Recall }
	p50 := func(x Result) float64 { return x.P50 }
	if err := chart(filepath.Join(dir, "recall.png"), r, "recall@10", recall, false); err != nil {
		return err
	}
	return chart(filepath.Join(dir, "latency.png"), r, "p50 latency (ms)", p50, true)
}

func chart(path string, r *Report, ylabel string, value func(Result) float64, logY bool) error {
	cols := len(Placements)
	panels := make([][]*plot.Plot, 1)
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, pl := range Placements {
		p := plot.New()
		p.Title.Text = string(pl)
		p.X.Label.Text = "selectivity"
		p.Y.Label.Text = ylabel
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = selectivityTicks{}
		if logY {
			p.Y.Scale = plot.LogScale{}
			p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
		}
		// The legend goes where no line runs: recall is high at 100%,
		// latency low at 0.1%.
		p.Legend.Top, p.Legend.Left = logY, logY
		for i, s := range Strategies {
			pts := series(r.Results, s, pl, value)
			line, points, err := plotter.NewLinePoints(pts)
			if err != nil {
				return err
			}
			line.Color = plotutil.Color(i)
			points.Color, points.Shape = plotutil.Color(i), plotutil.Shape(i)
			if s == Ragfence {
				line.Width = vg.Points(2.5)
			}
			p.Add(line, points)
			p.Legend.Add(s, line, points)
			for _, pt := range pts {
				lo, hi = math.Min(lo, pt.Y), math.Max(hi, pt.Y)
			}
		}
		p.Add(plotter.NewGrid())
		panels[0] = append(panels[0], p)
	}
	for _, p := range panels[0] {
		if logY {
			p.Y.Min, p.Y.Max = lo*0.8, hi*1.25
		} else {
			p.Y.Min, p.Y.Max = 0, 1.02
		}
	}
	img := vgimg.New(vg.Points(float64(cols)*330), vg.Points(300))
	dc := draw.New(img)
	canvases := plot.Align(panels, draw.Tiles{Rows: 1, Cols: cols, PadX: vg.Points(8)}, dc)
	for i, p := range panels[0] {
		p.Draw(canvases[0][i])
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("bench: write %s: %w", path, err)
	}
	return f.Close()
}

// series is one strategy's values in a placement, the 100% cell included.
func series(results []Result, strategy string, pl Placement, value func(Result) float64) plotter.XYs {
	var pts plotter.XYs
	for _, x := range results {
		if x.Strategy == strategy && (x.Placement == string(pl) || x.Placement == string(Everyone)) {
			pts = append(pts, plotter.XY{X: x.Selectivity, Y: math.Max(value(x), 1e-3)})
		}
	}
	return pts
}

// selectivityTicks labels the four selectivities as percentages.
type selectivityTicks struct{}

func (selectivityTicks) Ticks(min, max float64) []plot.Tick {
	var out []plot.Tick
	for _, v := range []float64{0.001, 0.01, 0.1, 1} {
		if v >= min && v <= max {
			out = append(out, plot.Tick{Value: v, Label: fmt.Sprintf("%g%%", v*100)})
		}
	}
	return out
}
