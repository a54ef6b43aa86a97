// Package subscribe turns one user and the fleet's ranked nodes into the
// answer to GET /sub/{token}: a sing-box profile, a mihomo profile, share
// links (base64 or plain), or a page for a browser, with the headers clients
// read usage and titles from.
//
// The controller looks the token up, ranks and filters nodes, fills in a
// Profile and calls Renderer.Serve:
//
//	r, err := subscribe.New(templateDir) // "" = built-in templates only
//	...
//	r.Serve(w, req, &subscribe.Profile{User: ..., Credentials: ..., Nodes: ranked})
//
// Serve is Choose (format) + SetHeaders + Render; the three are exported for
// callers that need them apart (HEAD handling, caching, tests).
//
// # Choosing the format
//
// ?format= wins: sing-box (singbox), mihomo (clash, clash-meta, stash),
// base64 (v2ray), links (plain) or html; ?version=1.12 picks a sing-box
// profile shape. Otherwise the User-Agent decides: Detect compares its start,
// case-insensitively, with these prefixes in this order, and the first match
// wins:
//
//	clash-verge, clash.meta, clash-meta, clashmeta,
//	mihomo, flclash, clash-nyanpasu, stash, clash      → mihomo YAML
//	sfa/, sfi/, sfm/, sft/, sing-box, karing           → sing-box JSON
//	hiddify, v2rayng, v2rayn, shadowrocket, streisand,
//	happ, foxray, v2box                                → base64 links
//	mozilla/, opera/                                   → HTML page
//	anything else                                      → base64 links
//
// Prefixes are anchored because some clients name others later in their
// User-Agent (Hiddify's ends in "like ClashMeta v2ray sing-box"). Hiddify
// gets links, not sing-box JSON: it runs its own sing-box fork and does not
// say which version, and sing-box rejects a whole profile over one field it
// does not know. An unknown User-Agent whose Accept header asks for
// text/html gets the page.
//
// # sing-box versions
//
// The sing-box clients put their core version in the User-Agent
// ("SFA/1.11.4 (574; sing-box 1.11.4; ...)"). Profiles come in three shapes:
// 1.11 (legacy DNS servers, rule actions; also served to anything older),
// 1.12 (typed DNS servers, route.default_domain_resolver) and 1.13 (as 1.12,
// with uTLS only where REALITY needs it), which newer clients and clients
// that do not say get. Every shape is tested against the matching real
// sing-box release.
//
// # Users who get no nodes
//
// Disabled, limited and expired users, and active users with no node left,
// get a well-formed profile whose single entry is named after the reason
// ("Traffic limit reached") and points at 127.0.0.1:1; the title carries the
// reason too, and subscription-userinfo still reports real usage. on_hold
// users get their nodes: their period starts with the first connection.
//
// # Templates
//
// The sing-box profile (sing-box.json), mihomo profile (mihomo.yaml) and
// page (page.html) are Go templates shipped in the binary; a file of the same
// name in the operator's template directory replaces one. New renders each
// once against a sample profile and parses the output, so a broken override
// fails at start-up. sing-box.json and mihomo.yaml see the Profile's fields
// (.User, .Title, .Status, ...) and:
//
//	.Reason      why the user gets no nodes, or ""
//	.SingBox     profile shape; .SingBox.AtLeast 12 branches on it
//	.Outbounds   the node outbounds, JSON objects separated by commas
//	.Tags        their tags as the body of a JSON list
//	.Proxies     the mihomo proxies block sequence (each line ends in \n)
//	.Names       their names as the body of a YAML flow list
//
// Nodes keep their rank order in every list, so fallback groups try the
// healthiest node first. Entry names are "<node> <inbound tag>": unique, and
// never equal to a group name without spaces.
//
// # Escaping
//
// Everything that comes from outside (names, passwords, paths, hosts) is
// written as a JSON string, a double-quoted YAML scalar or a percent-encoded
// URI component (package links), never spliced raw; header values are ASCII,
// with non-ASCII titles sent as "base64:<std base64>" and file names as
// RFC 6266 filename*.
package subscribe
