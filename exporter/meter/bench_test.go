package meter

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/boxfleet/boxfleet/exporter/attribution"
	"github.com/boxfleet/boxfleet/exporter/clashapi"
	"github.com/boxfleet/boxfleet/exporter/clashapi/clashapitest"
	"github.com/boxfleet/boxfleet/exporter/sbapi"
)

const benchConns, benchUsers = 10_000, 5_000

func quietLog() *logrus.Logger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

// BenchmarkPoll10k is one poll of a node with 10,000 open connections of
// 5,000 users: fetch over loopback, decode, attribute, account.
func BenchmarkPoll10k(b *testing.B) {
	srv := clashapitest.NewServer(clashapitest.Body(benchConns, benchUsers))
	defer srv.Close()
	clash, _ := clashapi.NewClient(srv.URL, "")
	m := New(Config{Clash: clash, Log: quietLog()})
	m.Poll(context.Background()) // baseline
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		m.Poll(context.Background())
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/float64(benchConns/1000), "µs/1k-conns")
}

// BenchmarkNaivePoll10k is the simplest alternative an operator would use:
// fetch /connections and sum bytes per inbound, nothing else.
func BenchmarkNaivePoll10k(b *testing.B) {
	srv := clashapitest.NewServer(clashapitest.Body(benchConns, benchUsers))
	defer srv.Close()
	clash, _ := clashapi.NewClient(srv.URL, "")
	b.ReportAllocs()
	for b.Loop() {
		s, err := clash.Connections(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		sums := map[string]attribution.Traffic{}
		for _, c := range s.Connections {
			sums[c.Inbound] = sums[c.Inbound].Add(attribution.Traffic{Up: c.Upload, Down: c.Download})
		}
	}
}

// BenchmarkDecodeOnly10k separates JSON decoding from the rest of a poll.
func BenchmarkDecodeOnly10k(b *testing.B) {
	body := clashapitest.Body(benchConns, benchUsers)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := clashapi.DecodeSnapshot(bytes.NewReader(body)); err != nil {
			b.Fatal(err)
		}
	}
}

// idleEvents is an API service that is never subscribed to: the benchmark
// fills the ledger itself.
type idleEvents struct{}

func (idleEvents) Subscribe(ctx context.Context, _ time.Duration, _ func(sbapi.Batch)) error {
	<-ctx.Done()
	return ctx.Err()
}

// BenchmarkPollAPI10k is one poll in API service mode of a node with 10,000
// open connections of 5,000 users that the connection events already
// named, with the state written at every poll: what a poll costs beside
// the events themselves.
func BenchmarkPollAPI10k(b *testing.B) {
	srv := clashapitest.NewServer(clashapitest.Body(benchConns, benchUsers))
	defer srv.Close()
	clash, _ := clashapi.NewClient(srv.URL, "")
	m := New(Config{Clash: clash, Events: idleEvents{}, StatePath: filepath.Join(b.TempDir(), "state.json"),
		WriteInterval: time.Nanosecond, Log: quietLog()})
	reset := sbapi.Batch{Reset: true}
	for i := range benchConns {
		reset.Events = append(reset.Events, sbapi.Event{Kind: sbapi.New, ID: fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i),
			User: fmt.Sprintf("user-%d", i%benchUsers), Inbound: "vless-in", HasTotals: true, Up: uint64(1000 + i), Down: uint64(50000 + 7*i)})
	}
	m.ledger.Apply(reset)
	m.Poll(context.Background()) // baseline
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		m.Poll(context.Background())
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/float64(benchConns/1000), "µs/1k-conns")
}
