package sbconfig

import "testing"

func TestAPIService(t *testing.T) {
	for name, tc := range map[string]struct {
		config, addr, secret string
		ok                   bool
	}{
		"loopback":                           {`{"services": [{"type": "api", "tag": "x", "listen": "127.0.0.1", "listen_port": 9091, "secret": "s3"}]}`, "127.0.0.1:9091", "s3", true},
		"with comments and a trailing comma": {"{\n // the API\n \"services\": [{\"type\": \"resolved\"}, {\"type\": \"api\", \"listen\": \"::1\", \"listen_port\": 9,},],\n}", "[::1]:9", "", true},
		"every address":                      {`{"services": [{"type": "api", "listen": "0.0.0.0", "listen_port": 9091}]}`, "127.0.0.1:9091", "", true},
		"no listen":                          {`{"services": [{"type": "api", "listen_port": 9091}]}`, "127.0.0.1:9091", "", true},
		"no port":                            {`{"services": [{"type": "api", "listen": "127.0.0.1"}]}`, "", "", false},
		"other services":                     {`{"services": [{"type": "ssm-api", "listen_port": 1}]}`, "", "", false},
		"none":                               {`{"inbounds": []}`, "", "", false},
		"not json":                           {`services: api`, "", "", false},
	} {
		addr, secret, ok := APIService([]byte(tc.config))
		if addr != tc.addr || secret != tc.secret || ok != tc.ok {
			t.Errorf("%s: APIService = %q, %q, %v; want %q, %q, %v", name, addr, secret, ok, tc.addr, tc.secret, tc.ok)
		}
	}
}
