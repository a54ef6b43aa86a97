// Package grpcraw lets the exporter speak to sing-box's gRPC services
// without generated code: messages are read and written with protowire, a
// few fields each, and passed through grpc as bytes. Generated code would
// pull in sing-box's whole proto tree for a handful of fields.
package grpcraw

import (
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protowire"
)

// Message is an encoded protobuf message.
type Message []byte

// Codec passes already encoded protobuf bytes through grpc.
type Codec struct{}

// Marshal implements grpc's encoding.Codec.
func (Codec) Marshal(v any) ([]byte, error) {
	m, ok := v.(*Message)
	if !ok {
		return nil, fmt.Errorf("grpcraw: unexpected %T", v)
	}
	return *m, nil
}

// Unmarshal implements grpc's encoding.Codec.
func (Codec) Unmarshal(data []byte, v any) error {
	m, ok := v.(*Message)
	if !ok {
		return fmt.Errorf("grpcraw: unexpected %T", v)
	}
	*m = append((*m)[:0], data...)
	return nil
}

// Name is the content subtype grpc announces.
func (Codec) Name() string { return "proto" }

// EachField calls fn for every field of an encoded message: the bytes of a
// length-delimited field, or the value of a varint one; other wire types
// are skipped.
func EachField(b []byte, fn func(num protowire.Number, typ protowire.Type, bytes []byte, varint uint64) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("protobuf: bad tag: %w", protowire.ParseError(n))
		}
		b = b[n:]
		var bytes []byte
		var varint uint64
		switch typ {
		case protowire.BytesType:
			bytes, n = protowire.ConsumeBytes(b)
		case protowire.VarintType:
			varint, n = protowire.ConsumeVarint(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return fmt.Errorf("protobuf: bad field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
		if err := fn(num, typ, bytes, varint); err != nil {
			return err
		}
	}
	return nil
}

// Dial prepares a client connection to one of sing-box's gRPC services on
// the node (plaintext: it listens on loopback). It reconnects at most 5 s
// apart: grpc's own default backs off to two minutes, and after a sing-box
// restart every call would fail fast for that long.
func Dial(addr string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr, append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 250 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 5 * time.Second},
			MinConnectTimeout: 5 * time.Second,
		}),
	}, opts...)...)
}
