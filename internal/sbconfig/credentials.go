package sbconfig

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
)

// NewCredentials draws a fresh set of user secrets from crypto/rand.
func NewCredentials() Credentials {
	return Credentials{
		UUID:     newUUID(),
		Password: base64.RawURLEncoding.EncodeToString(randomBytes(18)),
		SSKey16:  base64.StdEncoding.EncodeToString(randomBytes(16)),
		SSKey32:  base64.StdEncoding.EncodeToString(randomBytes(32)),
	}
}

// SSKey returns the user key a Shadowsocks method needs, or the password for
// methods that are not 2022 (they take any string).
func (c Credentials) SSKey(method string) string {
	switch SSKeyLen(method) {
	case 16:
		return c.SSKey16
	case 32:
		return c.SSKey32
	}
	return c.Password
}

// SSKeyLen is the PSK length in bytes a Shadowsocks 2022 method requires, or 0
// for other methods.
func SSKeyLen(method string) int {
	switch method {
	case "2022-blake3-aes-128-gcm":
		return 16
	case "2022-blake3-aes-256-gcm", "2022-blake3-chacha20-poly1305":
		return 32
	}
	return 0
}

// IsSS2022 reports whether method is a Shadowsocks 2022 method.
func IsSS2022(method string) bool { return strings.HasPrefix(method, "2022-") }

func randomBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		// crypto/rand never fails on supported platforms; a broken one must
		// not yield predictable secrets.
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return b
}

func newUUID() string {
	b := randomBytes(16)
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
