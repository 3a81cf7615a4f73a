// Package secret holds credential values in a type that cannot leak by
// accident: every printing, logging and encoding path shows a placeholder.
package secret

import (
	"fmt"
	"log/slog"
)

const redacted = "[redacted]"

// Value is a credential. Only Reveal returns the text; callers use it at the
// single point where the value must leave the process (an HTTP header, a
// Secret's data). The text sits behind a pointer because fmt prints a value
// held in an unexported field without calling its methods: a pointer shows
// only an address there.
type Value struct{ text *string }

// New wraps s.
func New(s string) Value { return Value{text: &s} }

// Reveal returns the credential itself.
func (v Value) Reveal() string {
	if v.text == nil {
		return ""
	}
	return *v.text
}

// IsZero reports whether the value is empty.
func (v Value) IsZero() bool { return v.Reveal() == "" }

// Equal compares two values without revealing either.
func (v Value) Equal(o Value) bool { return v.Reveal() == o.Reveal() }

func (v Value) String() string   { return redacted }
func (v Value) GoString() string { return redacted }

// Format covers %v, %+v, %#v, %s, %q and %x alike.
func (v Value) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

func (v Value) LogValue() slog.Value { return slog.StringValue(redacted) }

func (v Value) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

func (v Value) MarshalText() ([]byte, error) { return []byte(redacted), nil }
