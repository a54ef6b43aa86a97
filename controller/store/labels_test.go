package store_test

import (
	"context"
	"testing"

	"github.com/boxfleet/boxfleet/controller/store"
	"github.com/boxfleet/boxfleet/controller/store/storetest"
	"github.com/boxfleet/boxfleet/internal/sbconfig"
)

// An exporter started without --node.label keeps the labels the admin gave
// at `node add`, so its group (and the users it serves) does not change
// behind the admin's back; labels it does report win.
func TestRegistrationKeepsAdminLabels(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		if _, _, err := s.CreateNode(ctx, "admin", "n1", map[string]string{"group": "eu", "region": "de"}); err != nil {
			t.Fatal(err)
		}
		n, err := s.RegisterNode(ctx, "n1", sbconfig.Registration{Address: "192.0.2.1"})
		if err != nil {
			t.Fatal(err)
		}
		if n.Group() != "eu" || n.Labels["region"] != "de" {
			t.Fatalf("labels after a registration without labels: %v", n.Labels)
		}
		n, err = s.RegisterNode(ctx, "n1", sbconfig.Registration{Address: "192.0.2.1", Labels: map[string]string{"region": "fr"}})
		if err != nil {
			t.Fatal(err)
		}
		if n.Group() != "eu" || n.Labels["region"] != "fr" {
			t.Fatalf("labels after reporting region=fr: %v", n.Labels)
		}
	})
}
