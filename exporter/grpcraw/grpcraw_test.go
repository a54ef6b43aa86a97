package grpcraw

import (
	"reflect"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

func TestRawCodec(t *testing.T) {
	var c Codec
	if c.Name() != "proto" {
		t.Errorf("Name = %q", c.Name())
	}
	in := Message([]byte{0x0a, 0x07, 'u', 's', 'e', 'r', '>', '>', '>'})
	b, err := c.Marshal(&in)
	if err != nil || !reflect.DeepEqual(b, []byte(in)) {
		t.Errorf("Marshal = %x, %v", b, err)
	}
	if _, err := c.Marshal(in); err == nil {
		t.Error("Marshal of a non-pointer succeeded")
	}
	data := []byte{1, 2, 3}
	out := Message{9, 9, 9, 9, 9}
	if err := c.Unmarshal(data, &out); err != nil || !reflect.DeepEqual([]byte(out), data) {
		t.Errorf("Unmarshal = %x, %v", out, err)
	}
	data[0] = 7
	if out[0] != 1 {
		t.Error("Unmarshal kept a reference to grpc's buffer")
	}
	if err := c.Unmarshal(data, new([]byte)); err == nil {
		t.Error("Unmarshal into a foreign type succeeded")
	}
}

func TestEachField(t *testing.T) {
	b := protowire.AppendTag(nil, 1, protowire.BytesType)
	b = protowire.AppendString(b, "alice")
	b = protowire.AppendTag(b, 2, protowire.VarintType)
	b = protowire.AppendVarint(b, 1<<40)
	b = protowire.AppendTag(b, 3, protowire.Fixed32Type)
	b = protowire.AppendFixed32(b, 7)
	var got []any
	err := EachField(b, func(num protowire.Number, typ protowire.Type, bytes []byte, v uint64) error {
		switch typ {
		case protowire.BytesType:
			got = append(got, num, string(bytes))
		case protowire.VarintType:
			got = append(got, num, v)
		default:
			got = append(got, num, "skipped")
		}
		return nil
	})
	want := []any{protowire.Number(1), "alice", protowire.Number(2), uint64(1 << 40), protowire.Number(3), "skipped"}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("EachField = %v, %v; want %v", got, err, want)
	}
	if err := EachField(b[:len(b)-2], func(protowire.Number, protowire.Type, []byte, uint64) error { return nil }); err == nil {
		t.Error("a truncated message decoded without error")
	}
}
