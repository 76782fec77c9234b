package metrics

import dtopb "github.com/prometheus/client_model/go"

// dto wraps a parsed metric family for lookups by label.
type dto struct{ f *dtopb.MetricFamily }

func (d *dto) find(labels map[string]string) *dtopb.Metric {
	for _, m := range d.f.GetMetric() {
		match := len(m.GetLabel()) == len(labels)
		for _, l := range m.GetLabel() {
			if labels[l.GetName()] != l.GetValue() {
				match = false
			}
		}
		if match {
			return m
		}
	}
	return nil
}

func (d *dto) value(labels map[string]string) (float64, bool) {
	m := d.find(labels)
	switch {
	case m == nil:
		return 0, false
	case m.Gauge != nil:
		return m.GetGauge().GetValue(), true
	case m.Counter != nil:
		return m.GetCounter().GetValue(), true
	}
	return 0, false
}

func (d *dto) histCount(labels map[string]string) (uint64, bool) {
	m := d.find(labels)
	if m == nil || m.Histogram == nil {
		return 0, false
	}
	return m.GetHistogram().GetSampleCount(), true
}
