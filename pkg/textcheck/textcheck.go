// Package textcheck holds the one rule for short text fields that cross
// hosts in replicated state (names, hashes, reasons): printable and bounded.
package textcheck

import (
	"fmt"
	"unicode"
)

// MaxLen is the longest text field accepted, a DNS name's length.
const MaxLen = 253

// Printable refuses v when it is longer than MaxLen bytes or holds a
// character that does not print; field names it in the error.
func Printable(field, v string) error {
	if len(v) > MaxLen {
		return fmt.Errorf("field %s longer than %d bytes", field, MaxLen)
	}
	for _, r := range v {
		if !unicode.IsPrint(r) || r == unicode.ReplacementChar {
			return fmt.Errorf("field %s holds a non-printable character", field)
		}
	}
	return nil
}
