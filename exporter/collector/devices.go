package collector

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"net/netip"
	"os"
	"slices"
	"sync"
)

// Device counting across the fleet.
//
// singbox_user_source_ips counts a user's addresses on one node, and a sum
// over nodes counts a device connected to two nodes twice. Addresses must
// not become labels, so each exporter hashes every client address of a
// user with a key the whole fleet shares into one of DeviceBuckets buckets
// and exposes the buckets in use, one series each. The same address lands
// in the same bucket on every node, so Prometheus counts distinct devices
// fleet-wide as the number of distinct (user, bucket) pairs:
//
//	count by (user) (group by (user, bucket) (singbox_user_source_ip_bucket))
//
// Two addresses of one user fall into one bucket with probability about
// n(n-1)/2 / DeviceBuckets for n addresses (0.15 % for 4, 1.3 % for 11):
// the count can only be low by such collisions, never high. A node
// exposes at most MaxBucketsPerUser buckets per user, the lowest-numbered:
// every node keeps the same rule, so the union across nodes still holds at
// least min(true count, MaxBucketsPerUser) buckets, and a device limit
// below that is judged as if nothing were cut.
const (
	DeviceBuckets     = 4096
	MaxBucketsPerUser = 32
	// MinDeviceKeyBytes is the shortest key accepted: 128 bits.
	MinDeviceKeyBytes = 16
)

// LoadDeviceKey reads the fleet's device key from path: the file's bytes
// without surrounding white space. The key itself is never logged.
func LoadDeviceKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the device key: %w", err)
	}
	key := bytes.TrimSpace(b)
	if len(key) < MinDeviceKeyBytes {
		return nil, errors.New("the device key file holds fewer than 16 bytes; generate one with: head -c 32 /dev/urandom | base64")
	}
	return key, nil
}

// deviceHasher maps client addresses to buckets with HMAC-SHA256 under the
// fleet key. Without the key nobody can tell which bucket an address falls
// in, so the exposed buckets say nothing about the addresses behind them.
type deviceHasher struct {
	mu    sync.Mutex
	mac   hash.Hash
	cache map[netip.Addr]uint16 // addresses of the previous scrape
}

func newDeviceHasher(key []byte) *deviceHasher {
	return &deviceHasher{mac: hmac.New(sha256.New, key), cache: map[netip.Addr]uint16{}}
}

// deviceAddr is the part of a client address that names a device: the
// address itself for IPv4, the /64 prefix for IPv6, where one device (or
// one home behind one router, as with IPv4 NAT) changes its interface
// identifier every day or so under privacy extensions.
func deviceAddr(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64)
		a = p.Addr()
	}
	return a, true
}

// buckets returns, per user, the sorted buckets its sources fall in, at
// most MaxBucketsPerUser, the lowest. Addresses that do not parse (a
// connection sing-box reports without one) are skipped.
func (h *deviceHasher) buckets(sources map[string][]string) map[string][]uint16 {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string][]uint16, len(sources))
	seen := make(map[netip.Addr]uint16, len(h.cache))
	for user, addrs := range sources {
		var bs []uint16
		for _, s := range addrs {
			a, ok := deviceAddr(s)
			if !ok {
				continue
			}
			b, ok := seen[a]
			if !ok {
				if b, ok = h.cache[a]; !ok {
					b = h.bucket(a)
				}
				seen[a] = b
			}
			bs = append(bs, b)
		}
		if len(bs) == 0 {
			continue
		}
		slices.Sort(bs)
		bs = slices.Compact(bs)
		out[user] = bs[:min(len(bs), MaxBucketsPerUser)]
	}
	// Only the addresses of this scrape stay: memory follows the clients
	// online, and a departed address is forgotten at once.
	h.cache = seen
	return out
}

func (h *deviceHasher) bucket(a netip.Addr) uint16 {
	h.mac.Reset()
	h.mac.Write(a.AsSlice())
	sum := h.mac.Sum(nil)
	return uint16(binary.BigEndian.Uint32(sum) % DeviceBuckets)
}
