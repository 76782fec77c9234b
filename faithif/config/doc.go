// Package config reads faithif.conf, the declarative configuration of
// `faithif run`: the interfaces to create with their prefixes, MTU, routes,
// access rules, timeouts and limits, plus keepfaith, the sysctls the router
// needs, logging and the metrics address. deploy/faithif.conf is the
// commented example.
//
// The file is TOML. Load checks everything it can without changing the
// system: every error names the file, the line and the key, and every error
// in the file is reported, not only the first.
//
// The flags of `faithif create` describe one interface the same way and go
// through the same checks (FromFlags): one rule and one message for each
// setting, named by its flag instead of its key.
package config
