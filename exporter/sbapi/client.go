// Package sbapi follows the connection events of sing-box's API service
// (sing-box 1.14 and later, `"services": [{"type": "api", …}]`, in the
// stock release builds). Unlike the Clash API it names the user of every
// connection and reports each connection's final byte counts when it
// closes, so per-user traffic is exact without a special build: the
// connections that open and close between two looks, which the Clash API
// can only estimate, are counted to the byte.
//
// The service speaks gRPC; the few message fields needed here are read with
// protowire (package grpcraw) rather than generated code.
package sbapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/boxfleet/boxfleet/exporter/grpcraw"
)

const subscribeMethod = "/daemon.StartedService/SubscribeConnections"

// maxMessage bounds one message of the event stream: room for a Reset of
// several hundred thousand connections.
const maxMessage = 256 << 20

// Kind is what happened to a connection.
type Kind int

// The event kinds, numbered as sing-box numbers them.
const (
	New Kind = iota
	Update
	Closed
)

// Event is one connection event. New and Closed carry the connection's
// totals so far (final for Closed) when HasTotals; Update carries what it
// moved since the previous event.
type Event struct {
	Kind      Kind
	ID        string
	User      string
	Inbound   string
	Source    string // the client's host:port
	HasTotals bool
	Up, Down  uint64 // totals, from the client's point of view
	DeltaUp   uint64
	DeltaDown uint64
	ClosedAt  int64 // unix ms; non-zero for a connection that has closed
}

// Batch is one message of the stream. The first of each subscription is a
// Reset: the whole current state (open connections and the most recently
// closed ones, with their totals).
type Batch struct {
	Reset  bool
	Events []Event
}

// Client talks to one sing-box API service.
type Client struct {
	addr   string
	secret string

	mu   sync.Mutex
	conn *grpc.ClientConn
}

// Dial prepares a client for addr (host:port); it connects lazily. The
// secret is sent as a bearer token and never logged.
func Dial(addr, secret string) (*Client, error) {
	// The first message of a subscription lists every open connection and
	// the last 1,000 closed ones: about 200 bytes each, so 20,000 open
	// connections pass grpc's default limit of 4 MB.
	c := &Client{addr: addr, secret: secret}
	if err := c.redial(); err != nil {
		return nil, err
	}
	return c, nil
}

// redial replaces the client connection. A sing-box reload (SIGHUP) stops
// the old API service but leaves its HTTP/2 connections open, answering
// every call with an empty 200; grpc keeps using such a connection, so
// after a broken subscription the client starts over on a new one.
func (c *Client) redial() error {
	conn, err := grpcraw.Dial(c.addr, grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessage)))
	if err != nil {
		return fmt.Errorf("sing-box API %s: %w", c.addr, err)
	}
	c.mu.Lock()
	old := c.conn
	c.conn = conn
	c.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

// Close releases the connection.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn.Close()
}

// Subscribe follows connection events until ctx ends or the stream breaks,
// calling fn for each batch; sing-box sends traffic updates every interval.
func (c *Client) Subscribe(ctx context.Context, interval time.Duration, fn func(Batch)) error {
	err := c.subscribe(ctx, interval, fn)
	if ctx.Err() == nil {
		if rerr := c.redial(); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}
	return err
}

func (c *Client) subscribe(ctx context.Context, interval time.Duration, fn func(Batch)) error {
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if c.secret != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.secret)
	}
	// WaitForReady: while sing-box is restarting, wait for it (as long as
	// ctx allows) rather than fail at once.
	stream, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, subscribeMethod,
		grpc.ForceCodec(grpcraw.Codec{}), grpc.WaitForReady(true))
	if err != nil {
		return fmt.Errorf("sing-box API: %w", err)
	}
	req := grpcraw.Message(protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), uint64(interval.Nanoseconds())))
	if err := stream.SendMsg(&req); err != nil {
		return fmt.Errorf("sing-box API: %w", err)
	}
	if err := stream.CloseSend(); err != nil {
		return fmt.Errorf("sing-box API: %w", err)
	}
	for {
		var msg grpcraw.Message
		if err := stream.RecvMsg(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				return errors.New("sing-box API: connection events stream ended")
			}
			return fmt.Errorf("sing-box API: %w", err)
		}
		b, err := DecodeBatch(msg)
		if err != nil {
			return err
		}
		fn(b)
	}
}

// DecodeBatch reads ConnectionEvents{repeated ConnectionEvent events = 1;
// bool reset = 2}.
func DecodeBatch(msg []byte) (Batch, error) {
	var b Batch
	err := grpcraw.EachField(msg, func(num protowire.Number, typ protowire.Type, v []byte, n uint64) error {
		switch {
		case num == 1 && typ == protowire.BytesType:
			e, err := decodeEvent(v)
			if err != nil {
				return err
			}
			b.Events = append(b.Events, e)
		case num == 2 && typ == protowire.VarintType:
			b.Reset = n != 0
		}
		return nil
	})
	if err != nil {
		return Batch{}, fmt.Errorf("sing-box API: connection events: %w", err)
	}
	return b, nil
}

// decodeEvent reads ConnectionEvent{type = 1; id = 2; Connection connection
// = 3; uplinkDelta = 4; downlinkDelta = 5; closedAt = 6}.
func decodeEvent(msg []byte) (Event, error) {
	var e Event
	err := grpcraw.EachField(msg, func(num protowire.Number, typ protowire.Type, v []byte, n uint64) error {
		switch {
		case num == 1 && typ == protowire.VarintType:
			e.Kind = Kind(n)
		case num == 2 && typ == protowire.BytesType:
			e.ID = string(v)
		case num == 3 && typ == protowire.BytesType:
			e.HasTotals = true
			return decodeConnection(v, &e)
		case num == 4 && typ == protowire.VarintType:
			e.DeltaUp = nonNegative(n)
		case num == 5 && typ == protowire.VarintType:
			e.DeltaDown = nonNegative(n)
		case num == 6 && typ == protowire.VarintType:
			e.ClosedAt = int64(n)
		}
		return nil
	})
	return e, err
}

// decodeConnection reads the fields of Connection that metering needs: id
// = 1, inbound = 2, source = 6, user = 10, closedAt = 13, uplinkTotal =
// 16, downlinkTotal = 17.
func decodeConnection(msg []byte, e *Event) error {
	return grpcraw.EachField(msg, func(num protowire.Number, typ protowire.Type, v []byte, n uint64) error {
		switch {
		case num == 1 && typ == protowire.BytesType && e.ID == "":
			e.ID = string(v)
		case num == 2 && typ == protowire.BytesType:
			e.Inbound = string(v)
		case num == 6 && typ == protowire.BytesType:
			e.Source = string(v)
		case num == 10 && typ == protowire.BytesType:
			e.User = string(v)
		case num == 13 && typ == protowire.VarintType && n != 0:
			e.ClosedAt = int64(n)
		case num == 16 && typ == protowire.VarintType:
			e.Up = nonNegative(n)
		case num == 17 && typ == protowire.VarintType:
			e.Down = nonNegative(n)
		}
		return nil
	})
}

// nonNegative reads an int64 varint; sing-box never sends a negative
// count, and one would be a bug there, not a number to subtract.
func nonNegative(n uint64) uint64 {
	if int64(n) < 0 {
		return 0
	}
	return n
}
