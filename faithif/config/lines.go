package config

import (
	"fmt"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// indexLines maps every table and key in a TOML document to the line it is
// on, so that checks made after decoding can name the line. Keys are dotted
// paths with the index of each array-of-tables element:
// "interface[1].route[0].prefix".
func indexLines(data []byte) (map[string]int, error) {
	lines := map[string]int{}
	count := map[string]int{} // array-of-tables elements seen, by unindexed path
	var p unstable.Parser
	p.Reset(data)
	table := ""
	for p.NextExpression() {
		e := p.Expression()
		var parts []string
		line := 0
		for it := e.Key(); it.Next(); {
			n := it.Node()
			if line == 0 {
				line = p.Shape(p.Range(n.Data)).Start.Line
			}
			parts = append(parts, string(n.Data))
		}
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			table = indexedPath(parts, count, e.Kind == unstable.ArrayTable)
			lines[table] = line
		case unstable.KeyValue:
			path := strings.Join(parts, ".")
			if table != "" {
				path = table + "." + path
			}
			lines[path] = line
		}
	}
	if err := p.Error(); err != nil {
		return nil, fmt.Errorf("toml: %w", err)
	}
	return lines, nil
}

// indexedPath names a table header: for [[a.b]] it is "a[i].b[j]", where i
// is the latest element of a and j the new element of a[i].b. count holds
// the elements seen so far of each array of tables, by indexed path.
func indexedPath(parts []string, count map[string]int, array bool) string {
	path := ""
	for k, part := range parts {
		if k > 0 {
			path += "."
		}
		path += part
		if k == len(parts)-1 && array {
			n := count[path]
			count[path] = n + 1
			path += fmt.Sprintf("[%d]", n)
		} else if n := count[path]; n > 0 {
			path += fmt.Sprintf("[%d]", n-1)
		}
	}
	return path
}
