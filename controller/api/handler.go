package api

import "net/http"

// handler is the shape of the API's JSON handlers: a value to answer with,
// or an error. serve writes either, so that no handler writes its own
// failure: the value as JSON with 200 (or the status of an answer), the
// error as the error envelope through fail.
type handler func(w http.ResponseWriter, r *http.Request) (any, error)

// answer is a value answered with a status other than 200; a nil body
// writes none.
type answer struct {
	status int
	body   any
}

// created answers 201 with v.
func created(v any) answer { return answer{status: http.StatusCreated, body: v} }

// noContent answers 204.
var noContent = answer{status: http.StatusNoContent}

// serve adapts h to http.HandlerFunc.
func (a *API) serve(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := h(w, r)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		ans, ok := v.(answer)
		switch {
		case !ok:
			writeJSON(w, http.StatusOK, v)
		case ans.body == nil:
			w.WriteHeader(ans.status)
		default:
			writeJSON(w, ans.status, ans.body)
		}
	}
}
