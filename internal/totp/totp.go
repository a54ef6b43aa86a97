// Package totp computes and checks RFC 6238 time-based one-time passwords
// (HMAC-SHA1, 6 digits, 30-second steps: what every authenticator app
// assumes when an otpauth URI names nothing else).
//
// It is written here rather than taken from a library because the whole
// algorithm is an HMAC and a truncation (RFC 4226 §5.3); the tests check it
// against the RFC's own vectors.
package totp

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Step is the time step of RFC 6238's default profile.
const Step = 30 * time.Second

// Digits is the code length authenticator apps show by default.
const Digits = 6

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewSecret returns 20 random bytes (the HMAC-SHA1 block RFC 4226 §4
// recommends) in unpadded base32, the form otpauth URIs carry.
func NewSecret() string {
	b := make([]byte, 20)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return b32.EncodeToString(b)
}

func decodeSecret(secret string) ([]byte, error) {
	s := strings.ToUpper(strings.ReplaceAll(secret, " ", ""))
	return b32.DecodeString(strings.TrimRight(s, "="))
}

// StepAt is the counter RFC 6238 derives from a time.
func StepAt(t time.Time) int64 { return t.Unix() / int64(Step/time.Second) }

// CodeAt returns the code for counter step with digits digits (RFC 4226
// HOTP with the step as the counter).
func CodeAt(key []byte, step int64, digits int) string {
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], uint64(step))
	mac := hmac.New(sha1.New, key)
	mac.Write(msg[:])
	sum := mac.Sum(nil)
	off := sum[len(sum)-1] & 0x0f
	bin := binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff
	mod := uint32(1)
	for range digits {
		mod *= 10
	}
	return fmt.Sprintf("%0*d", digits, bin%mod)
}

// Code returns the current 6-digit code of a base32 secret.
func Code(secret string, t time.Time) (string, error) {
	key, err := decodeSecret(secret)
	if err != nil {
		return "", fmt.Errorf("TOTP secret is not base32: %w", err)
	}
	return CodeAt(key, StepAt(t), Digits), nil
}

// Match reports the step at which code is valid for secret at time t,
// allowing one step of clock skew either way, or ok false. Callers refuse
// a step at or before the last one they accepted, so a code works once.
func Match(secret, code string, t time.Time) (step int64, ok bool) {
	key, err := decodeSecret(secret)
	if err != nil || len(code) != Digits {
		return 0, false
	}
	now := StepAt(t)
	for _, s := range []int64{now - 1, now, now + 1} {
		if subtle.ConstantTimeCompare([]byte(CodeAt(key, s, Digits)), []byte(code)) == 1 {
			step, ok = s, true
		}
	}
	return step, ok
}

// URI is the otpauth:// URI authenticator apps read from a QR code.
func URI(issuer, account, secret string) string {
	v := url.Values{"secret": {secret}, "issuer": {issuer}, "algorithm": {"SHA1"}, "digits": {"6"}, "period": {"30"}}
	return "otpauth://totp/" + url.PathEscape(issuer+":"+account) + "?" + v.Encode()
}
