package store

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
)

// argon2id parameters: OWASP's Password Storage Cheat Sheet minimum (19 MiB,
// two passes, one lane). A check costs tens of milliseconds, which the
// login limiter's five tries per five minutes makes moot for guessing
// online, and which slows a thief of the database file.
const (
	argonMemory  = 19 * 1024 // KiB
	argonTime    = 2
	argonThreads = 1
	argonKeyLen  = 32
	argonSaltLen = 16
)

// MinPasswordLength is the shortest password an admin may set.
const MinPasswordLength = 12

// maxPasswordLength bounds the work one login can ask argon2 to do.
const maxPasswordLength = 1024

// commonPasswords are the most used passwords of at least 12 characters
// in public breach corpora, compared without case: length alone lets these
// through, and they are the first a guesser tries.
var commonPasswords = map[string]bool{}

func init() {
	for p := range strings.FieldsSeq(`
123456789012 1234567890123 12345678901234 123456789123 1234567890qwerty
qwertyuiop123 qwertyuiopasdfghjkl 1q2w3e4r5t6y 1q2w3e4r5t6y7u 1qaz2wsx3edc
1qaz2wsx3edc4rfv qazwsxedcrfv 1qazxsw23edc zaq12wsxcde3 password1234 password12345
password123456 passw0rd1234 p@ssw0rd1234 p@ssword1234 administrator administrator1
admin1234567 adminadmin123 adminpassword iloveyou1234 111111111111 000000000000
123123123123 abc123456789 abcdefghijkl abcdefg12345 qwerty123456 qwertyqwerty
letmein12345 welcome12345 welcome123456 changeme1234 changeme123456 football1234
baseball1234 monkey123456 sunshine1234 princess1234 trustno1trustno1 starwars1234
superman1234 batman123456 dragon123456 master123456 whatever1234 asdfghjkl123
asdfghjkl;' zxcvbnm12345 1234qwerasdfzxcv qwer1234asdf aaaaaaaaaaaa 987654321098
098765432109 passwordpassword 147258369147 159753159753
michael12345 jennifer1234 computer1234 internet1234 boxfleet1234 boxfleetadmin
singbox12345 sing-box1234 proxyadmin123 marzban12345 xray12345678 v2ray1234567
`) {
		commonPasswords[p] = true
	}
}

// CheckPasswordRules says why a password may not be set, or nil.
func CheckPasswordRules(pw string) error {
	switch {
	case utf8.RuneCountInString(pw) < MinPasswordLength:
		return invalid("password", "must be at least %d characters", MinPasswordLength)
	case len(pw) > maxPasswordLength:
		return invalid("password", "must be at most %d bytes", maxPasswordLength)
	case commonPasswords[strings.ToLower(pw)]:
		return invalid("password", "is one of the most common passwords; choose another")
	}
	return nil
}

// HashPassword returns pw hashed with argon2id in the PHC string format,
// which names its parameters so that they can be raised later without
// invalidating stored hashes.
func HashPassword(pw string) string {
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		panic(err)
	}
	key := argon2.IDKey([]byte(pw), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		enc.EncodeToString(salt), enc.EncodeToString(key))
}

// CheckPassword reports whether pw matches a hash from HashPassword,
// comparing in constant time. A malformed hash matches nothing.
func CheckPassword(hash, pw string) bool {
	var version int
	var m uint32
	var t uint32
	var p uint8
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" || len(pw) > maxPasswordLength {
		return false
	}
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m > 1<<20 || t > 16 || p == 0 {
		return false
	}
	enc := base64.RawStdEncoding
	salt, err1 := enc.DecodeString(parts[4])
	want, err2 := enc.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false
	}
	got := argon2.IDKey([]byte(pw), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

var dummy struct {
	once sync.Once
	hash string
}

// DummyPasswordCheck does the work of one CheckPassword against nothing:
// a login for a name that does not exist must take as long as one for a
// name that does, or the timing tells which names exist.
func DummyPasswordCheck(pw string) {
	dummy.once.Do(func() { dummy.hash = HashPassword("boxfleet-dummy-password") })
	CheckPassword(dummy.hash, pw)
}

// RandomPassword returns a password for a new account: 24 base64url
// characters (144 bits).
func RandomPassword() string {
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
