// Package v2rayapi reads per-user counters from sing-box's V2Ray stats
// service (built with the with_v2ray_api tag). The messages are three small
// protobuf types, encoded here by hand rather than generated, to keep the
// dependency to grpc alone.
package v2rayapi

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/boxfleet/boxfleet/exporter/attribution"
	"github.com/boxfleet/boxfleet/exporter/grpcraw"
)

// sing-box registers the service under V2Ray's name, so V2Ray tools work too.
const queryMethod = "/v2ray.core.app.stats.command.StatsService/QueryStats"

// Client queries one stats service.
type Client struct {
	conn *grpc.ClientConn
}

// Dial prepares a client for addr (host:port); it connects lazily.
func Dial(addr string) (*Client, error) {
	conn, err := grpcraw.Dial(addr)
	if err != nil {
		return nil, fmt.Errorf("v2ray API %s: %w", addr, err)
	}
	return &Client{conn: conn}, nil
}

// Close releases the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Users returns the cumulative per-user counters. It never resets them:
// another reader (or our own restart) must see the same totals.
func (c *Client) Users(ctx context.Context) (map[string]attribution.Traffic, error) {
	req := grpcraw.Message(encodeQuery("user>>>", false))
	var resp grpcraw.Message
	if err := c.conn.Invoke(ctx, queryMethod, &req, &resp, grpc.ForceCodec(grpcraw.Codec{})); err != nil {
		return nil, fmt.Errorf("v2ray QueryStats: %w", err)
	}
	stats, err := decodeStats(resp)
	if err != nil {
		return nil, err
	}
	return userTraffic(stats), nil
}

// userTraffic folds "user>>>NAME>>>traffic>>>uplink|downlink" counters.
func userTraffic(stats map[string]int64) map[string]attribution.Traffic {
	out := map[string]attribution.Traffic{}
	for name, v := range stats {
		rest, ok := strings.CutPrefix(name, "user>>>")
		if !ok || v < 0 {
			continue
		}
		if user, ok := strings.CutSuffix(rest, ">>>traffic>>>uplink"); ok {
			t := out[user]
			t.Up = uint64(v)
			out[user] = t
		} else if user, ok := strings.CutSuffix(rest, ">>>traffic>>>downlink"); ok {
			t := out[user]
			t.Down = uint64(v)
			out[user] = t
		}
	}
	return out
}

func encodeQuery(pattern string, reset bool) []byte {
	b := protowire.AppendTag(nil, 1, protowire.BytesType)
	b = protowire.AppendString(b, pattern)
	if reset {
		b = protowire.AppendTag(b, 2, protowire.VarintType)
		b = protowire.AppendVarint(b, 1)
	}
	return b
}

// decodeStats reads QueryStatsResponse{repeated Stat stat = 1} where
// Stat{string name = 1; int64 value = 2}.
func decodeStats(b []byte) (map[string]int64, error) {
	out := map[string]int64{}
	err := grpcraw.EachField(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		if num != 1 || typ != protowire.BytesType {
			return nil
		}
		var name string
		var value int64
		err := grpcraw.EachField(v, func(num protowire.Number, typ protowire.Type, v []byte, n uint64) error {
			switch {
			case num == 1 && typ == protowire.BytesType:
				name = string(v)
			case num == 2 && typ == protowire.VarintType:
				value = int64(n)
			}
			return nil
		})
		if err != nil {
			return err
		}
		out[name] = value
		return nil
	})
	return out, err
}
