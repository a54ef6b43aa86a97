package totp

import (
	"testing"
	"time"
)

// The SHA-1 rows of RFC 6238 Appendix B: 8-digit codes for the ASCII key
// "12345678901234567890".
func TestRFC6238Vectors(t *testing.T) {
	key := []byte("12345678901234567890")
	for _, v := range []struct {
		unix int64
		want string
	}{
		{59, "94287082"},
		{1111111109, "07081804"},
		{1111111111, "14050471"},
		{1234567890, "89005924"},
		{2000000000, "69279037"},
		{20000000000, "65353130"},
	} {
		if got := CodeAt(key, StepAt(time.Unix(v.unix, 0)), 8); got != v.want {
			t.Errorf("T=%d: got %s, want %s", v.unix, got, v.want)
		}
	}
}

func TestMatchSkewAndSecretForm(t *testing.T) {
	// The RFC key in base32, lower case with a space, as people paste it.
	secret := "gezdgnbv gy3tqojqgezdgnbvgy3tqojq"
	at := time.Unix(1111111111, 0)
	code, err := Code(secret, at)
	if err != nil {
		t.Fatal(err)
	}
	if code != "050471" { // the last 6 digits of the RFC's 14050471
		t.Fatalf("6-digit code %s", code)
	}
	for _, d := range []time.Duration{-Step, 0, Step} {
		if step, ok := Match(secret, code, at.Add(d)); !ok || step != StepAt(at) {
			t.Errorf("code refused %v away: ok=%v step=%d", d, ok, step)
		}
	}
	for _, d := range []time.Duration{-2 * Step, 2 * Step} {
		if _, ok := Match(secret, code, at.Add(d)); ok {
			t.Errorf("code accepted %v away", d)
		}
	}
	if _, ok := Match(secret, "05047", at); ok {
		t.Error("a 5-digit prefix matched")
	}
	if _, ok := Match("not base32!", code, at); ok {
		t.Error("a broken secret matched")
	}
}
