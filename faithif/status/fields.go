package status

import (
	"fmt"
	"reflect"
	"strings"
	"sync"
)

// Field is one field of Status as its tags describe it.
type Field struct {
	// JSON is the field's key in the JSON form.
	JSON string
	// Group is the text line the field is printed on ("-": the heading);
	// Item its name within that line ("": the line is this field alone).
	Group, Item string
	// Metric says how the field is exported to Prometheus; nil if it is
	// not.
	Metric *Metric
	// ShowIf is the JSON key of another field: the text form prints this
	// one only while that one is not empty (showif tag), so that a feature
	// left off takes no lines. Empty: always printed.
	ShowIf string

	index []int // of the field in Status, for reflect
}

// Metric is a field's Prometheus metric.
type Metric struct {
	// Name is the metric's name after "faithif_".
	Name string
	// Counter is true for a counter, false for a gauge.
	Counter bool
	// Label is the label, besides "interface", that a map field's keys
	// go in, or that LabelValue goes in; empty for a plain series.
	Label string
	// LabelValue is the value of Label for a field that is one series of
	// a family (such as bytes_total{direction="client_to_server"}).
	LabelValue string
	// Help is the metric's help text.
	Help string
}

// Value returns the field's value in st: a bool, an integer, a float64, a
// string, a []string, an []int or a map[string]uint64.
func (f *Field) Value(st *Status) any {
	return reflect.ValueOf(st).Elem().FieldByIndex(f.index).Interface()
}

// Fields returns the description of every field of Status, in order, with
// the fields of the embedded counters in their place.
func Fields() []Field { return fields() }

// fields parses the tags once. A bad tag is a programming error: the
// package's tests parse them.
var fields = sync.OnceValue(func() []Field {
	fs, err := parseFields(reflect.TypeFor[Status](), nil)
	if err != nil {
		panic(err)
	}
	if err := checkFamilies(fs); err != nil {
		panic(err)
	}
	return fs
})

// parseFields reads the tags of the fields of t, flattening embedded
// structs; index is t's own index path.
func parseFields(t reflect.Type, index []int) ([]Field, error) {
	var out []Field
	for i := range t.NumField() {
		sf := t.Field(i)
		idx := append(append([]int(nil), index...), i)
		if sf.Anonymous {
			sub, err := parseFields(sf.Type, idx)
			if err != nil {
				return nil, err
			}
			out = append(out, sub...)
			continue
		}
		f := Field{JSON: sf.Tag.Get("json"), index: idx}
		if f.JSON == "" || strings.Contains(f.JSON, ",") {
			return nil, fmt.Errorf("status: field %s: want a plain json key", sf.Name)
		}
		text := sf.Tag.Get("text")
		if text == "" {
			text = strings.ReplaceAll(f.JSON, "_", " ")
		}
		f.Group, f.Item, _ = strings.Cut(text, ",")
		f.ShowIf = sf.Tag.Get("showif")
		if m := sf.Tag.Get("metric"); m != "" {
			metric, err := parseMetric(m, sf.Tag.Get("help"), sf.Type)
			if err != nil {
				return nil, fmt.Errorf("status: field %s: %w", sf.Name, err)
			}
			f.Metric = metric
		}
		out = append(out, f)
	}
	return out, nil
}

// parseMetric parses "TYPE NAME [LABEL[=VALUE]]" for a field of type t.
func parseMetric(tag, help string, t reflect.Type) (*Metric, error) {
	w := strings.Fields(tag)
	if len(w) < 2 || len(w) > 3 || (w[0] != "counter" && w[0] != "gauge") {
		return nil, fmt.Errorf("metric tag %q: want TYPE NAME [LABEL[=VALUE]]", tag)
	}
	if help == "" {
		return nil, fmt.Errorf("metric %s has no help tag", w[1])
	}
	m := &Metric{Name: w[1], Counter: w[0] == "counter", Help: help}
	if len(w) == 3 {
		m.Label, m.LabelValue, _ = strings.Cut(w[2], "=")
	}
	isMap := t.Kind() == reflect.Map
	switch {
	case isMap && (m.Label == "" || m.LabelValue != ""):
		return nil, fmt.Errorf("metric %s: a map field needs a LABEL for its keys", m.Name)
	case !isMap && m.Label != "" && m.LabelValue == "":
		return nil, fmt.Errorf("metric %s: a single series needs LABEL=VALUE", m.Name)
	}
	return m, nil
}

// checkFamilies checks that the fields of one metric family agree on its
// type, help and label.
func checkFamilies(fs []Field) error {
	first := map[string]*Metric{}
	for _, f := range fs {
		m := f.Metric
		if m == nil {
			continue
		}
		p, ok := first[m.Name]
		if !ok {
			first[m.Name] = m
			continue
		}
		if p.Counter != m.Counter || p.Help != m.Help || p.Label != m.Label || p.LabelValue == m.LabelValue {
			return fmt.Errorf("status: metric %s: its fields disagree on type, help or label, or repeat a series", m.Name)
		}
	}
	return nil
}
