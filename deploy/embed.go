package deploy

import "embed"

// Files are what a node's one-line install fetches from the controller:
// the script, and the unit and flags file it installs beside the binary.
//
//go:embed install-node.sh singbox_exporter.flags singbox_exporter.service
var Files embed.FS
