// Package flows is the live flow table of a running faithN as `faithif
// flows` shows it: one Flow per flow its relay is setting up or relaying
// (addresses and ports on both sides, state, age, idle time, bytes each
// way), in a Table that carries a schema version. The Table's JSON form is
// both what the control socket answers and what `faithif flows --json`
// prints; its keys follow the metrics' names (bytes_client_to_server,
// age_seconds). Build makes a Table from a relay's snapshot, filtered by
// client and destination (Filter, parsed from the command line by
// ParseClient and ParseDest) and sorted (Sort); WriteText prints it as
// aligned columns.
package flows
