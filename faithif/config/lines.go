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
func indexLines(data []byte) (lineIndex, error) {
	lines := lineIndex{}
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
			lines[strings.ToLower(table)] = line
		case unstable.KeyValue:
			path := strings.Join(parts, ".")
			if table != "" {
				path = table + "." + path
			}
			lines[strings.ToLower(path)] = line
		}
	}
	if err := p.Error(); err != nil {
		return nil, fmt.Errorf("toml: %w", err)
	}
	return lines, nil
}

// lineIndex maps a key's path to its line, case-insensitively: the
// decoder matches keys to settings regardless of case ([SYSCTL] is
// [sysctl]), and an error about one must still find its line.
type lineIndex map[string]int

// at returns the line of path, 0 if the file does not have it. The decoder
// also takes a plain table ([interface.dns64], [[interface.route]]) for the
// one element of an array of tables (interface[0].dns64): failing an exact
// match, the first line of a key that is path but for its indexes.
func (l lineIndex) at(path string) int {
	path = strings.ToLower(path)
	if n, ok := l[path]; ok {
		return n
	}
	bare, line := stripIndexes(path), 0
	for k, n := range l {
		if stripIndexes(k) == bare && (line == 0 || n < line) {
			line = n
		}
	}
	return line
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
