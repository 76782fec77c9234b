// Package deploy holds the example configuration files, faithif.conf and
// faithd.conf, embedded so that the faithif.conf(5) man page faithif prints
// quotes them as they are.
package deploy

import _ "embed"

var (
	//go:embed faithif.conf
	faithifConf string
	//go:embed faithd.conf
	faithdConf string
)

// FaithifConf returns faithif.conf: the commented example with every key
// of the appliance's configuration.
func FaithifConf() string { return faithifConf }

// FaithdConf returns faithd.conf: an example access file.
func FaithdConf() string { return faithdConf }
