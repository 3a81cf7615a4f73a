package secret

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestValueNeverPrints(t *testing.T) {
	const raw = "gldt-abcdefghijklmnopqrst"
	v := New(raw)
	holder := struct {
		Token  Value
		hidden Value
		Name   string
	}{v, v, "n"}

	var outputs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X"} {
		outputs = append(outputs, fmt.Sprintf(verb, v), fmt.Sprintf(verb, holder), fmt.Sprintf(verb, &holder))
	}
	outputs = append(outputs, v.String(), fmt.Sprint(v), fmt.Sprintln(v))
	j, err := json.Marshal(holder)
	if err != nil {
		t.Fatal(err)
	}
	outputs = append(outputs, string(j))
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "token", v, "holder", holder)
	slog.New(slog.NewTextHandler(&logs, nil)).Info("x", "token", v)
	outputs = append(outputs, logs.String())

	for _, out := range outputs {
		if strings.Contains(out, raw) || strings.Contains(out, "6764") /* hex of "gd" */ {
			t.Errorf("value leaked: %q", out)
		}
	}
	if v.Reveal() != raw {
		t.Fatalf("Reveal() = %q", v.Reveal())
	}
	if !v.Equal(New(raw)) || v.Equal(New("other")) || v.IsZero() || !New("").IsZero() {
		t.Fatal("Equal/IsZero wrong")
	}
}
