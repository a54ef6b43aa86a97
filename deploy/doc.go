// Package deploy is the home of the tests that check how boxfleet is
// deployed (docker-compose.yml, the Dockerfiles, the node's systemd unit
// and install script) against the programs and configs they start, without
// a Docker engine or systemd running. Its one piece of code embeds the
// node's install files, which the controller serves under /install/.
package deploy
