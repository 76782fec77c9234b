package status

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteText prints st as `faithif show` does: a heading with the name, the
// process, the command it runs (faithif create or run) and the uptime, then
// one line per group of fields.
func (st *Status) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	up := (time.Duration(st.UptimeSeconds) * time.Second).String()
	fmt.Fprintf(tw, "%s:\tpid %d (faithif %s), up %s\n", st.Name, st.PID, st.Owner, up)
	var order []string
	lines := map[string][]string{}
	fs := Fields()
	for _, f := range fs {
		if f.Group == "-" || !shown(fs, f, st) {
			continue
		}
		if _, ok := lines[f.Group]; !ok {
			order = append(order, f.Group)
		}
		v := formatValue(f.Value(st))
		if f.Item != "" {
			v = f.Item + " " + v
		}
		lines[f.Group] = append(lines[f.Group], v)
	}
	for _, g := range order {
		fmt.Fprintf(tw, "  %s\t%s\n", g, strings.Join(lines[g], ", "))
	}
	return tw.Flush()
}

// shown reports whether f is printed: it has no showif, or the field its
// showif names is not empty.
func shown(fs []Field, f Field, st *Status) bool {
	if f.ShowIf == "" {
		return true
	}
	for _, g := range fs {
		if g.JSON == f.ShowIf {
			return formatValue(g.Value(st)) != "none"
		}
	}
	return true
}

// formatValue prints a field's value: booleans as 1 or 0 (as sysctl and
// the metrics do), lists and maps sorted, "none" for an empty one.
func formatValue(v any) string {
	switch x := v.(type) {
	case bool:
		if x {
			return "1"
		}
		return "0"
	case string:
		if x == "" {
			return "none"
		}
		return x
	case []string:
		if len(x) == 0 {
			return "none"
		}
		return strings.Join(x, ", ")
	case []int:
		if len(x) == 0 {
			return "none"
		}
		s := make([]string, len(x))
		for i, n := range x {
			s[i] = fmt.Sprint(n)
		}
		return strings.Join(s, ", ")
	case map[string]uint64:
		if len(x) == 0 {
			return "none"
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		s := make([]string, len(keys))
		for i, k := range keys {
			s[i] = fmt.Sprintf("%s %d", k, x[k])
		}
		return strings.Join(s, ", ")
	}
	return fmt.Sprint(v)
}
