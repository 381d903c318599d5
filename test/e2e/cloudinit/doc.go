// Command cloudinit fills rke2-hanode's example #cloud-config user-data in
// with a test bed's values, for the NoCloud seed of a host whose own
// cloud-init runs it at boot:
//
//	cloudinit -user-data [-replace OLD=NEW]... FILE > seed/user-data
//
// Without -user-data it prints instead a POSIX shell script that does what
// cloud-init does with the part the examples use (write_files, then
// runcmd), for a host without cloud-init.
//
// Replacements are applied to the file's text before it is decoded (the
// test bed swaps the example addresses, token and URLs for its own); a
// replacement that matches nothing is an error. It refuses any top-level
// key it does not model, so an example that grows one fails the test
// instead of being half-run.
//
// It never runs anything itself, and it is a test instrument, not a
// cloud-init implementation.
package main
