package bench

import (
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Plot draws a run: output tokens/s against median time per output token,
// one line per server through its levels, and each level's TTFT
// distribution (CDF). The format follows name's extension: .png or .svg.
func Plot(w io.Writer, name string, results []LevelResult) error {
	var targets []string
	for _, r := range results {
		if !slices.Contains(targets, r.Target) {
			targets = append(targets, r.Target)
		}
	}

	tp := plot.New()
	tp.Title.Text = "Throughput against latency"
	tp.X.Label.Text = "output tokens/s"
	tp.Y.Label.Text = "TPOT p50 (ms/token)"
	tp.Add(plotter.NewGrid())
	for i, t := range targets {
		var xy plotter.XYs
		var labels []string
		for _, r := range results {
			if r.Target == t && r.Stats.Completed > 0 {
				xy = append(xy, plotter.XY{X: r.Stats.OutPerSec, Y: r.Stats.TPOT.P50})
				labels = append(labels, r.Level.String())
			}
		}
		if len(xy) == 0 {
			continue
		}
		line, points, err := plotter.NewLinePoints(xy)
		if err != nil {
			return err
		}
		line.Color, points.Color = plotutil.Color(i), plotutil.Color(i)
		points.Shape = plotutil.Shape(i)
		lab, err := plotter.NewLabels(plotter.XYLabels{XYs: xy, Labels: labels})
		if err != nil {
			return err
		}
		for j := range lab.TextStyle {
			lab.TextStyle[j].XAlign = draw.XLeft
			lab.Offset = vg.Point{X: vg.Points(4), Y: vg.Points(2)}
		}
		tp.Add(line, points, lab)
		tp.Legend.Add(t, line, points)
	}
	tp.Legend.Top = true

	cdf := plot.New()
	cdf.Title.Text = "Time to first token"
	cdf.X.Label.Text = "TTFT (ms)"
	cdf.Y.Label.Text = "fraction of requests"
	cdf.Add(plotter.NewGrid())
	var levels []Level
	for _, r := range results {
		if !slices.Contains(levels, r.Level) {
			levels = append(levels, r.Level)
		}
	}
	for _, r := range results {
		var v []float64
		for _, s := range r.Samples {
			if s.OK() {
				v = append(v, ms(s.TTFT))
			}
		}
		if len(v) == 0 {
			continue
		}
		sort.Float64s(v)
		xy := make(plotter.XYs, len(v))
		for i, x := range v {
			xy[i] = plotter.XY{X: x, Y: float64(i+1) / float64(len(v))}
		}
		line, err := plotter.NewLine(xy)
		if err != nil {
			return err
		}
		ti := slices.Index(targets, r.Target)
		line.Color = plotutil.Color(ti)
		line.Dashes = plotutil.Dashes(slices.Index(levels, r.Level))
		line.Width = vg.Points(1.5)
		cdf.Add(line)
		cdf.Legend.Add(fmt.Sprintf("%s %v", r.Target, r.Level), line)
	}

	width, height := 30*vg.Centimeter, 12*vg.Centimeter
	var c vg.CanvasWriterTo
	switch strings.ToLower(filepath.Ext(name)) {
	case ".png":
		c = vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(width, height), vgimg.UseDPI(110))}
	case ".svg":
		c = vgsvg.New(width, height)
	default:
		return fmt.Errorf("plot %s: want a .png or .svg file", name)
	}
	dc := draw.New(c)
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Centimeter, PadTop: vg.Millimeter * 3, PadBottom: vg.Millimeter * 3,
		PadLeft: vg.Millimeter * 3, PadRight: vg.Millimeter * 5}
	canvases := plot.Align([][]*plot.Plot{{tp, cdf}}, tiles, dc)
	tp.Draw(canvases[0][0])
	cdf.Draw(canvases[0][1])
	_, err := c.WriteTo(w)
	return err
}
