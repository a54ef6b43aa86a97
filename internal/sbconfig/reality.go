package sbconfig

import (
	"crypto/ecdh"
	"encoding/base64"
	"errors"
	"fmt"
)

// RealityPublicKey derives the public key that REALITY clients need from the
// server's private key, both in sing-box's encoding (unpadded base64url of
// the 32-byte X25519 key).
func RealityPublicKey(private string) (string, error) {
	if private == "" {
		return "", errors.New("reality: private_key is empty")
	}
	b, err := base64.RawURLEncoding.DecodeString(private)
	if err != nil {
		return "", fmt.Errorf("reality: private_key: %w", err)
	}
	key, err := ecdh.X25519().NewPrivateKey(b)
	if err != nil {
		return "", fmt.Errorf("reality: private_key: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(key.PublicKey().Bytes()), nil
}
