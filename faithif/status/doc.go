// Package status describes what a running faithN reports: its
// configuration, its state and every counter of its relay and its stack, as
// one Status value.
//
// Each field of Status (and of the relay.Counters and stack.Counters it
// embeds) is described once, by its struct tags, and every reader works from
// that description, so that adding a counter is one field and the readers
// cannot disagree:
//
//	json:"KEY"                  its key in `faithif show --json` (and the control socket)
//	text:"GROUP[,ITEM]"         where the text `faithif show` prints it: fields of one group
//	                            share a line, "ITEM VALUE, ..."; "-" for the heading
//	metric:"TYPE NAME [LABEL]"  the Prometheus metric faithif_NAME (TYPE counter or gauge);
//	                            LABEL is the label a map's keys go in, or LABEL=VALUE for a
//	                            field that is one series of a family
//	help:"..."                  the metric's help text
//	showif:"KEY"                the text form prints the field only while the field
//	                            whose JSON key is KEY is not empty (a feature left off)
//
// Fields reads the description; WriteText prints a Status as `show` does;
// Decode reads the JSON form strictly (every key present, none unknown), for
// tests and scripts that must notice a renamed key. Package metrics turns the
// same description into Prometheus metrics.
package status
