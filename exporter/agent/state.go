package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"

	"github.com/boxfleet/boxfleet/internal/atomicfile"
)

// applied is what the agent remembers across restarts: which user set the
// config file holds, so that a restart asks the controller with that ETag
// and reloads nothing when the set has not changed.
type applied struct {
	Revision int64  `json:"revision"`
	ETag     string `json:"etag"`
	// ConfigSHA256 is the hash of the file as the agent wrote it. When the
	// file changed since (an operator or config management replaced it),
	// the ETag no longer says what the file holds and is not sent.
	ConfigSHA256 string `json:"config_sha256"`
}

func hashOf(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func loadApplied(path string) (applied, error) {
	var a applied
	if path == "" {
		return a, nil
	}
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return a, nil
	}
	if err != nil {
		return a, err
	}
	if err := json.Unmarshal(b, &a); err != nil {
		return applied{}, fmt.Errorf("%s: %w", path, err)
	}
	return a, nil
}

func saveApplied(path string, a applied) error {
	if path == "" {
		return nil
	}
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, b, 0o600)
}
