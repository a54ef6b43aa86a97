package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/sirupsen/logrus"

	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/internal/apiclient"
)

// writeError writes the API's one error shape, apiclient.Envelope, which
// the CLI and the node agent decode.
func writeError(w http.ResponseWriter, status int, code, msg, field string) {
	writeJSON(w, status, apiclient.Envelope{Error: &apiclient.Error{Code: code, Message: msg, Field: field}})
}

// fail maps store and decoding errors to status codes, and writes an
// *apiclient.Error a handler returns as it is; anything unexpected is
// logged and answered as a 500 without internals.
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ve *store.ValidationError
	var mbe *http.MaxBytesError
	var le *store.LimitError
	var ae *apiclient.Error
	switch {
	case errors.As(err, &ae):
		writeError(w, ae.Status, ae.Code, ae.Message, ae.Field)
	case errors.As(err, &le):
		writeError(w, http.StatusForbidden, apiclient.CodeOverLimit, le.Error(), le.Field)
	case errors.As(err, &ve):
		writeError(w, http.StatusBadRequest, apiclient.CodeInvalid, ve.Error(), ve.Field)
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, apiclient.CodeNotFound, "no such object", "")
	case errors.Is(err, store.ErrConflict):
		writeError(w, http.StatusConflict, apiclient.CodeConflict, "an object with that name already exists", "")
	case errors.As(err, &mbe):
		writeError(w, http.StatusRequestEntityTooLarge, apiclient.CodeTooLarge, "request body too large", "")
	case errors.Is(err, errBadBody):
		writeError(w, http.StatusBadRequest, apiclient.CodeBadRequest, err.Error(), "")
	default:
		a.log.WithFields(logrus.Fields{"path": r.URL.Path, "method": r.Method}).WithError(err).Error("request failed")
		writeError(w, http.StatusInternalServerError, apiclient.CodeInternal, "internal error; see the controller's log", "")
	}
}

var errBadBody = errors.New("malformed JSON body")

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// decode reads a JSON body of at most maxBody bytes into v; unknown fields
// are errors, so that a typo never silently does nothing.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return err
		}
		return fmt.Errorf("%w: %w", errBadBody, err)
	}
	// Only EOF may follow the object: dec.More() would accept a stray "}"
	// or "]" after it.
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: data after the JSON object", errBadBody)
	}
	return nil
}

const maxBody = 1 << 20
