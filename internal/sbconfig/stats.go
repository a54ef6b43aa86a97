package sbconfig

import (
	"encoding/json"
	"maps"
	"slices"
	"unicode/utf8"
)

// sing-box's V2Ray stats service (experimental.v2ray_api.stats, builds with
// with_v2ray_api) keeps per-user counters only for the names in its users
// list, read when sing-box starts or reloads. A user written into an
// inbound but missing there is served and never counted, so the list
// follows the users the fleet writes.

// statsUsersEdit returns the edit that sets stats.users to the sorted,
// de-duplicated names of the users written into managed inbounds (injected),
// plus the names already listed that belong to users of inbounds the fleet
// does not manage: those are the operator's. Every other listed name was
// the fleet's and goes, so a deleted user stops being listed. ok is false
// when the config has no stats object; then nothing changes. The rest of
// the stats object (enabled, inbounds, outbounds) is the operator's and
// stays as it is.
func (d *document) statsUsersEdit(managed []managedInbound, injected []string) (e edit, ok bool, err error) {
	if d.stats == nil {
		return edit{}, false, nil
	}
	members, err := objectMembers(d.std, *d.stats)
	if err != nil {
		return edit{}, false, err
	}
	keep := map[string]bool{}
	for _, n := range injected {
		if n != "" { // sing-box counts no user without a name
			keep[asWritten(n)] = true
		}
	}
	if m, ok := find(members, "users"); ok {
		// A value that is not a list of names is replaced whole.
		var listed []json.RawMessage
		_ = json.Unmarshal(d.std[m.value.start:m.value.end], &listed)
		others := d.unmanagedUserNames(managed)
		for _, raw := range listed {
			var n string
			if json.Unmarshal(raw, &n) == nil && others[n] {
				keep[n] = true
			}
		}
	}
	names := slices.Sorted(maps.Keys(keep))
	entries := make([][]byte, 0, len(names))
	for _, n := range names {
		b, err := json.Marshal(n)
		if err != nil {
			return edit{}, false, err
		}
		entries = append(entries, b)
	}
	return d.setMember(*d.stats, members, "users", entries), true, nil
}

// unmanagedUserNames collects the user names of the inbounds the fleet does
// not manage, as sing-box reports them to the stats service: name, or
// username for socks, http and mixed; and the destination names of a
// Shadowsocks relay.
func (d *document) unmanagedUserNames(managed []managedInbound) map[string]bool {
	mine := map[int]bool{}
	for _, m := range managed {
		mine[m.span.start] = true
	}
	names := map[string]bool{}
	for _, s := range d.inbounds {
		if mine[s.start] {
			continue
		}
		var in struct {
			Users        []json.RawMessage `json:"users"`
			Destinations []json.RawMessage `json:"destinations"`
		}
		_ = json.Unmarshal(d.std[s.start:s.end], &in) // whatever decodes
		for _, raw := range append(in.Users, in.Destinations...) {
			var u struct {
				Name     string `json:"name"`
				Username string `json:"username"`
			}
			if json.Unmarshal(raw, &u) != nil {
				continue
			}
			for _, n := range []string{u.Name, u.Username} {
				if n != "" {
					names[n] = true
				}
			}
		}
	}
	return names
}

// asWritten is name as sing-box reads it back from the file: encoding/json
// writes each invalid UTF-8 byte as U+FFFD.
func asWritten(name string) string {
	if utf8.ValidString(name) {
		return name
	}
	b, _ := json.Marshal(name)
	var s string
	_ = json.Unmarshal(b, &s)
	return s
}
