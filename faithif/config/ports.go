package config

import (
	"slices"
	"strconv"
	"strings"
)

// portList checks a per-interface list of destination ports: the key's
// TOML list, or its create flag as given, comma-separated ("513,514", or
// "none" for the empty list). ok is false if it is absent or wrong (and
// then an error is recorded at path).
func (c *checker) portList(path string, list *[]int, flag *string, example string) ([]uint16, bool) {
	var ns []int
	switch {
	case flag != nil:
		s := strings.TrimSpace(*flag)
		if s == "" || s == "none" {
			return nil, true
		}
		for _, w := range strings.Split(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(w))
			if err != nil {
				c.errorf(path, "%q is not a port number (want e.g. %s, or none)", w, example)
				return nil, false
			}
			ns = append(ns, n)
		}
	case list != nil:
		ns = *list
	default:
		return nil, false
	}
	var ports []uint16
	ok := true
	for _, n := range ns {
		switch {
		case n < 1 || n > 65535:
			c.errorf(path, "port %d: must be between 1 and 65535", n)
			ok = false
		case slices.Contains(ports, uint16(n)):
			c.errorf(path, "port %d is listed twice", n)
			ok = false
		default:
			ports = append(ports, uint16(n))
		}
	}
	return ports, ok
}
