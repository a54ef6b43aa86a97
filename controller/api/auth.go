package api

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/sirupsen/logrus"

	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/internal/apiclient"
)

// Grant is what one role may do on one route.
type Grant int

const (
	Deny  Grant = iota // 403
	Allow              // the whole route
	Own                // resellers: the route, limited to the account's own users (the handler scopes it)
)

// Policy says who may call a route. Every route that is neither public
// nor a node's own declares a grant for every role: Handle refuses to
// register one that leaves a role out, so a new route cannot ship without
// a decision for each.
type Policy struct {
	Public bool // anyone: /sub/, health checks, the login itself
	Node   bool // only the node named in the path, with its node token
	Roles  map[string]Grant
}

var (
	public  = Policy{Public: true}
	nodeOwn = Policy{Node: true}
)

// roles builds a policy from the grants of owner, operator, viewer and
// reseller, in that order.
func roles(owner, operator, viewer, reseller Grant) Policy {
	return Policy{Roles: map[string]Grant{store.RoleOwner: owner, store.RoleOperator: operator,
		store.RoleViewer: viewer, store.RoleReseller: reseller}}
}

// Common policies.
var (
	ownerOnly = roles(Allow, Deny, Deny, Deny)
	staffRead = roles(Allow, Allow, Allow, Deny)  // reads resellers never see
	staffEdit = roles(Allow, Allow, Deny, Deny)   // changes resellers never make
	userRead  = roles(Allow, Allow, Allow, Own)   // users: resellers see their own
	userEdit  = roles(Allow, Allow, Deny, Own)    // users: resellers change their own
	anyAdmin  = roles(Allow, Allow, Allow, Allow) // every role, e.g. "who am I"
)

func (p Policy) check() error {
	if p.Public || p.Node {
		return nil
	}
	for _, r := range store.Roles {
		if _, ok := p.Roles[r]; !ok {
			return fmt.Errorf("no grant for role %s", r)
		}
	}
	return nil
}

// Handle registers a route with its policy and instrumentation.
func (a *API) Handle(name, method, path string, p Policy, h http.HandlerFunc) {
	if err := p.check(); err != nil {
		panic(fmt.Sprintf("route %s %s: %v", method, path, err))
	}
	inner := h
	if revokesTokens(name, method) {
		inner = a.forgettingTokens(name, inner)
	}
	if !p.Public {
		inner = a.require(p, inner)
	}
	if !p.Public && !p.Node && method != http.MethodGet && method != http.MethodHead {
		inner = a.noticeChanges(inner)
	}
	a.router.Handle(path, a.instrument(name, inner)).Methods(method).Name(name)
}

// Principal is who made a request.
type Principal struct {
	Actor   string // for the audit log: admin:NAME, token:NAME or node:NAME
	Role    string // "" for a node
	Node    string // the node of a node token
	Account string // the admin account acting (sessions, reseller tokens)
	Session *store.Session
	// Remembered says the database did not answer and the bearer token
	// was recognised from the token memory: the store is likely down.
	Remembered bool

	expires time.Time // a named token's own expiry; zero for none
}

type principalKey struct{}

// Who returns the request's principal, or nil before authentication.
func Who(r *http.Request) *Principal {
	p, _ := r.Context().Value(principalKey{}).(*Principal)
	return p
}

// Caller returns the audit-log actor of an authenticated request.
func Caller(r *http.Request) string {
	if p := Who(r); p != nil {
		return p.Actor
	}
	return "anonymous"
}

func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// identifyToken says whose bearer token this is, or nil for a token nobody
// issued. The token-file admin tokens are the owner, as they were before
// accounts existed; their actor keeps its "admin:" form so that the audit
// log reads as it did.
//
// A node's token is looked up first where only a node may call (nodeRoute),
// and answered from memory once seen (nodeDir).
func (a *API) identifyToken(ctx context.Context, tok string, nodeRoute bool) (*Principal, error) {
	if node := a.nodes.tokenNode(ctx, tok); node != "" {
		return &Principal{Actor: "node:" + node, Node: node}, nil
	}
	if nodeRoute {
		if p, err := a.identifyNode(ctx, tok); p != nil || err != nil {
			return p, err
		}
	}
	name, err := a.store.AdminTokenName(ctx, tok)
	if err != nil {
		return nil, err
	}
	if name != "" {
		return &Principal{Actor: "admin:" + name, Role: store.RoleOwner}, nil
	}
	t, err := a.store.APITokenFor(ctx, tok)
	if err != nil {
		return nil, err
	}
	if t != nil {
		p := &Principal{Actor: "token:" + t.Name, Role: t.Role, Account: t.Admin}
		if t.ExpiresAt != nil {
			p.expires = *t.ExpiresAt
		}
		return p, nil
	}
	if nodeRoute {
		return nil, nil // asked above
	}
	return a.identifyNode(ctx, tok)
}

// identifyNode looks a node token up in the database.
func (a *API) identifyNode(ctx context.Context, tok string) (*Principal, error) {
	node, err := a.store.NodeNameForToken(ctx, tok)
	if err != nil || node == "" {
		return nil, err
	}
	a.nodes.rememberToken(ctx, tok, node)
	return &Principal{Actor: "node:" + node, Node: node}, nil
}

// noticeChanges tells the node caches that a change request went through
// this API: the revision watcher reads at once, so that a change reaches
// the long-polling nodes when it is made, and the nodes are read anew.
// Every such request counts, whatever its outcome: a spurious notice
// costs a read or two.
func (a *API) noticeChanges(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h(w, r)
		a.nodes.invalidate()
		a.revs.Poke()
	}
}

// identifyBearer is identifyToken under a short deadline, with the token
// memory behind it. A database cut off by its link (packets vanish, no
// reset) holds a query until TCP gives up, about 15 minutes; two seconds
// keep a scrape well inside Prometheus's scrape timeout. When the lookup
// fails, a token the database vouched for lately is still honoured (see
// tokenMemory); any other token gets the error, never a guess.
//
// Node tokens are not remembered here: the node directory answers them
// from its own cache, and their routes need the database anyway.
func (a *API) identifyBearer(r *http.Request, tok string, nodeRoute bool) (*Principal, error) {
	mem := a.tokens
	h := store.HashToken(tok)
	gen := mem.generation()
	ctx, cancel := context.WithTimeout(r.Context(), lookupTimeout)
	defer cancel()
	p, err := a.identifyToken(ctx, tok, nodeRoute)
	switch {
	case err != nil:
		if p := mem.recall(h, a.now()); p != nil {
			log := a.log.WithFields(logrus.Fields{"actor": p.Actor, "path": r.URL.Path}).WithError(err)
			msg := "the database did not answer a token lookup; honouring the token it vouched for lately"
			if mem.warnRecall(a.now()) {
				log.Warn(msg + " (logged once a minute)")
			} else {
				log.Debug(msg)
			}
			return p, nil
		}
		return nil, err
	case p == nil || p.Node != "":
		mem.forget(h) // unknown now: revoked, expired or its account disabled
	default:
		mem.remember(h, p, p.expires, gen, a.now())
	}
	return p, nil
}

// revokesTokens says whether a route can take a bearer token's power away:
// deleting a named token, and changing or deleting the admin account a
// reseller token acts for. Such a request drops the tokens it may revoke
// from the token memory, so that a token revoked here is never honoured
// from it.
func revokesTokens(name, method string) bool {
	if method == http.MethodGet || method == http.MethodHead {
		return false
	}
	return strings.HasPrefix(name, "tokens.") || strings.HasPrefix(name, "admins.")
}

// forgettingTokens drops from the token memory the tokens a request on
// the token or account named in its path may revoke (every token when the
// path names none), before the request and again after it, whatever its
// outcome: a lookup that raced the change cannot put a revoked token back
// (tokenMemory.generation).
func (a *API) forgettingTokens(route string, h http.HandlerFunc) http.HandlerFunc {
	tokens := strings.HasPrefix(route, "tokens.")
	return func(w http.ResponseWriter, r *http.Request) {
		name := mux.Vars(r)["name"]
		revoked := func(p *Principal) bool {
			switch {
			case name == "":
				return true
			case tokens:
				return p.Actor == "token:"+name
			default: // an admin account: the reseller tokens acting for it
				return p.Account == name
			}
		}
		a.tokens.drop(revoked)
		defer a.tokens.drop(revoked)
		h(w, r)
	}
}

// authenticate finds the principal of a bearer token or, failing that, a
// session cookie. A request that carries a bearer token is judged on it
// alone: a wrong token is not rescued by a cookie.
func (a *API) authenticate(r *http.Request, nodeRoute bool) (*Principal, error) {
	if tok := bearer(r); tok != "" {
		return a.identifyBearer(r, tok, nodeRoute)
	}
	if r.Header.Get("Authorization") != "" {
		return nil, nil // another scheme (Basic…): nobody we know
	}
	tok := sessionCookie(r)
	if tok == "" {
		return nil, nil
	}
	se, err := a.store.SessionFor(r.Context(), tok, a.sess.Idle)
	if err != nil || se == nil {
		return nil, err
	}
	return &Principal{Actor: "admin:" + se.Admin, Role: se.Role, Account: se.Admin, Session: se}, nil
}

// require lets a request through when its principal may use the route:
// 401 for no or an unknown credential, 403 for one that may not, or for a
// cookie-authenticated change that a browser sent from another site.
//
// A credential the database could not be asked about gets 503, not 401:
// the controller cannot tell an unknown token from a valid one it has not
// seen, and a 401 would tell the holder of a valid token to replace it.
// Every such credential gets the same answer, so it says nothing about
// the token.
func (a *API) require(p Policy, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		who, err := a.authenticate(r, p.Node)
		if err != nil {
			a.log.WithField("path", r.URL.Path).WithError(err).Warn("the database did not answer a credential lookup")
			writeError(w, http.StatusServiceUnavailable, apiclient.CodeUnavailable, "the database did not answer; try again", "")
			return
		}
		if who == nil {
			unauthorized(w)
			return
		}
		if who.Session != nil {
			if err := a.cop.Check(r); err != nil {
				writeError(w, http.StatusForbidden, apiclient.CodeForbidden, "cross-origin request refused", "")
				return
			}
		}
		if !p.allows(r, who) {
			writeError(w, http.StatusForbidden, apiclient.CodeForbidden, "this credential may not use this endpoint", "")
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, who)))
	}
}

func (p Policy) allows(r *http.Request, who *Principal) bool {
	if p.Node {
		return who.Node != "" && who.Node == mux.Vars(r)["name"]
	}
	return who.Node == "" && p.Roles[who.Role] != Deny
}

func unauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="boxfleet"`)
	writeError(w, http.StatusUnauthorized, apiclient.CodeUnauthorized, "missing or unknown bearer token or session", "")
}

// storeFor is the store as the caller may see it: a reseller's view holds
// only its own users.
func (a *API) storeFor(r *http.Request) *store.Store {
	if p := Who(r); p != nil && p.Role == store.RoleReseller {
		return a.store.OwnedBy(p.Account)
	}
	return a.store
}

// seesSecrets reports whether the caller may read credentials: viewers
// read everything else, but not what would let them act as a user.
func seesSecrets(r *http.Request) bool {
	p := Who(r)
	return p != nil && p.Role != store.RoleViewer
}
