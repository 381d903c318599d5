// Command cloudinit turns the part of a #cloud-config user-data file that
// rke2-hanode's examples use (write_files and runcmd) into a POSIX shell
// script that does exactly what cloud-init would do with them, so the test
// bed can run the shipped user-data in hosts that have no cloud-init.
//
//	cloudinit [-replace OLD=NEW]... FILE > script.sh
//
// Replacements are applied to the file's text before it is decoded (the
// test bed swaps the example addresses, token and URLs for its own). It
// refuses any other top-level key, so an example that grows a key this
// runner does not model fails the test instead of being half-run.
//
// It never runs anything itself, and it is a test instrument, not a
// cloud-init implementation.
package main
