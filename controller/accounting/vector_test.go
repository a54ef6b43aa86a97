package accounting

import (
	"fmt"
	"math"
	"strings"
	"testing"
)

// TestDecodeNodeVector checks the accountant's own decoding of Prometheus's
// query answer on what a real answer may hold beyond plain counters.
func TestDecodeNodeVector(t *testing.T) {
	body := `{"status":"success","warnings":["w"],"data":{"resultType":"vector","result":[
	  {"metric":{"__name__":"singbox_exporter_counters_start_timestamp_seconds","node":"n1"},"value":[1.5,"1700000000"]},
	  {"metric":{"user":"a\"b\u00e9","__name__":"singbox_user_traffic_bytes_total","direction":"upload","extra":{"x":[1,{}]}},"value":[ 1.5 , "123456789012" ]},
	  {"metric":{"__name__":"singbox_user_traffic_bytes_total","user":"h","direction":"download"},"histogram":[1.5,{"count":"1"}]},
	  {"metric":{"__name__":"singbox_user_traffic_bytes_total","user":"n","direction":"download"},"value":[1.5,"NaN"]}
	]}}`
	v, err := decodeNodeVector([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	r := v.Data.Result
	if len(r) != 4 || v.Status != "success" || v.Data.ResultType != "vector" || len(v.Warnings) != 1 {
		t.Fatalf("decoded %+v", v)
	}
	if r[0].Metric.Name != epochMetric || r[0].Value != (point{v: 1_700_000_000, ok: true}) {
		t.Errorf("epoch sample decoded as %+v", r[0])
	}
	if m := r[1].Metric; m.User != "a\"b\u00e9" || m.Direction != "upload" || r[1].Value != (point{v: 123456789012, ok: true}) {
		t.Errorf("escaped user decoded as %+v", r[1])
	}
	if r[2].Value.ok {
		t.Errorf("a histogram sample has a value: %+v", r[2])
	}
	if !r[3].Value.ok || !math.IsNaN(r[3].Value.v) {
		t.Errorf("NaN decoded as %+v", r[3])
	}
	for _, bad := range []string{`{"status":"success","data":{"result":[{"value":[1,2]}]}}`, `{"status":"success","data":{"result":[{"value":"1"}]}}`, `{"status":`} {
		if _, err := decodeNodeVector([]byte(bad)); err == nil {
			t.Errorf("%s decoded without an error", bad)
		}
	}
}

// BenchmarkDecodeNodeVector decodes one node's answer for 2,500 users in
// both directions, as Prometheus writes it: a cycle over 1,000,000 series
// is 200 of these.
func BenchmarkDecodeNodeVector(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"status":"success","data":{"resultType":"vector","result":[`)
	for u := range 2500 {
		for d, dir := range directions {
			if u+d > 0 {
				sb.WriteByte(',')
			}
			fmt.Fprintf(&sb, `{"metric":{"__name__":"%s","direction":"%s","instance":"127.0.0.1:36743","job":"test","node":"node000","user":"u%06d"},"value":[1795326939.921,"%d"]}`,
				metric, dir, u, u*1000+d)
		}
	}
	sb.WriteString(`]}}`)
	body := []byte(sb.String())
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := decodeNodeVector(body); err != nil {
			b.Fatal(err)
		}
	}
}
