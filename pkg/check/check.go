// Package check is the one shape of a preflight result, shared by every
// package that checks the host (the VIP, RKE2's needs) and printed alike by
// `rke2-hanode preflight`.
package check

// Status is a check's outcome.
type Status string

// Outcomes: ok passes, warn is shown but stops nothing, fail stops the
// daemon (or, for a VIP conflict, the bootstrap).
const (
	OK   Status = "ok"
	Warn Status = "warn"
	Fail Status = "fail"
)

// Check is the result of one preflight check. Err is set for fail (and for
// some warn) results, so callers can test it with errors.Is.
type Check struct {
	Name   string
	Status Status
	Detail string
	Err    error
}
