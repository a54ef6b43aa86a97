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
	for _, d := range []struct {
		name   string
		decode func([]byte) (*nodeVector, error)
	}{{"scan", decodeNodeVector}, {"json-iterator", decodeNodeVectorSlow}} {
		b.Run(d.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := d.decode(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// FuzzScanVector: whatever scanVector accepts, json-iterator decodes too,
// to the same labels and values; anything scanVector turns down is left
// to json-iterator, so the accountant reads every answer as before.
func FuzzScanVector(f *testing.F) {
	for _, seed := range []string{
		`{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"singbox_user_traffic_bytes_total","direction":"upload","instance":"a:1","job":"j","node":"n1","user":"u1"},"value":[1795326939.921,"12"]}]}}`,
		`{"status":"success","isPartial":false,"data":{"resultType":"vector","result":[{"metric":{"node":"n1","scraped":"1"},"value":[1700000000,"1700000000.123"]},{"metric":{"node":"n1","gate":"1"},"value":[1.5,"NaN"]}]},"stats":{"seriesFetched":"5","executionTimeMsec":1}}`,
		`{"status":"success","data":{"resultType":"vector","result":[]}}`,
		` { "status" : "success" , "data" : { "result" : [ { "metric" : { "user" : "ü" } , "histogram" : [ 1 , { "count" : "1" } ] } ] } } `,
		`{"status":"success","data":{"result":[{"metric":{"User":"x"},"value":[1,"1"]}]}}`,
		`{"status":"error","errorType":"bad_data","error":"parse error"}`,
		`{"status":"success","warnings":["w"],"data":{"result":[]}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		fast, ok := scanVector(body)
		if !ok {
			return
		}
		slow, err := decodeNodeVectorSlow(body)
		if err != nil {
			t.Fatalf("scanVector accepted what json-iterator refuses (%v): %q", err, body)
		}
		if !sameVector(fast, slow) {
			t.Fatalf("scanVector read %+v, json-iterator %+v, from %q", fast, slow, body)
		}
	})
}

// sameVector compares two decoded answers, NaN equal to NaN.
func sameVector(a, b *nodeVector) bool {
	if a.Status != b.Status || a.ErrorType != b.ErrorType || a.Error != b.Error || len(a.Warnings) != len(b.Warnings) ||
		a.Data.ResultType != b.Data.ResultType || len(a.Data.Result) != len(b.Data.Result) {
		return false
	}
	for i, x := range a.Data.Result {
		y := b.Data.Result[i]
		if x.Metric != y.Metric || x.Value.ok != y.Value.ok || math.Float64bits(x.Value.v) != math.Float64bits(y.Value.v) {
			return false
		}
	}
	return true
}

// The fast path must take the answers Prometheus and VictoriaMetrics give
// when all is well (or it saves nothing) and leave the rest alone.
func TestScanVectorTakesUsualAnswers(t *testing.T) {
	for body, want := range map[string]bool{
		`{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"m","node":"n","user":"u","direction":"upload"},"value":[1795326939.921,"12"]}]}}`: true,
		`{"status":"success","isPartial":false,"data":{"resultType":"vector","result":[]},"stats":{"seriesFetched":"0","executionTimeMsec":1}}`:                               true,
		` { "status" : "success" , "data" : { "result" : [ { "metric" : { "user" : "ü" } , "histogram" : [ 1 , { } ] } ] } } `:                                                true,
		`{"status":"success","data":{"result":[{"metric":{"user":"a\"b"},"value":[1,"1"]}]}}`:                                                                                 false, // an escape
		`{"status":"success","data":{"result":[{"metric":{"User":"x"},"value":[1,"1"]}]}}`:                                                                                    false, // encoding/json would read User as user
		`{"status":"success","warnings":["w"],"data":{"result":[]}}`:                                                                                                          false,
		`{"status":"error","errorType":"bad_data","error":"parse error"}`:                                                                                                     false,
		`{"status":"success","data":{"result":[{"metric":{"user":"u"},"value":[1,"x"]}]}}`:                                                                                    false, // the slow way reports it
		`{"status":"success","data":{"result":[]}} x`:                                                                                                                         false,
		"{\"status\":\"success\",\"data\":{\"result\":[{\"metric\":{\"user\":\"\xff\"},\"value\":[1,\"1\"]}]}}":                                                               false,
	} {
		if _, ok := scanVector([]byte(body)); ok != want {
			t.Errorf("scanVector(%q) ok = %v, want %v", body, ok, want)
		}
	}
	v, ok := scanVector([]byte(`{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"m","node":"n","user":"u","direction":"upload"},"value":[1795326939.921,"12"]},{"metric":{"node":"n","user":"v","direction":"upload"},"value":[1,"NaN"]}]}}`))
	if !ok || len(v.Data.Result) != 2 || v.Data.Result[0].Metric != (sampleLabels{Name: "m", Node: "n", User: "u", Direction: "upload"}) ||
		v.Data.Result[0].Value != (point{v: 12, ok: true}) || !math.IsNaN(v.Data.Result[1].Value.v) || v.Data.Result[1].Metric.User != "v" {
		t.Errorf("scanned %+v", v)
	}
}
