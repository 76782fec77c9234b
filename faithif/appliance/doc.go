// Package appliance is `faithif run`: a whole FAITH router described by one
// faithif.conf, applied together and undone together. It sets the
// configuration's sysctls and keepfaith, serves its metrics, starts one
// instance per interface, and on stop drains them all and puts back exactly
// what it changed.
package appliance
