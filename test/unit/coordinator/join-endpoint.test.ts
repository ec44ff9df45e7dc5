import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { NetworkInterfaceInfo } from 'node:os';
import { remoteJoinEndpoint } from '../../../src/coordinator/join-endpoint.js';

const nic = (address: string, family: 'IPv4' | 'IPv6', internal: boolean): NetworkInterfaceInfo => (family === 'IPv4'
  ? { address, family, internal, netmask: '255.255.255.0', mac: '00:00:00:00:00:00', cidr: null }
  : { address, family, internal, netmask: 'ffff:ffff:ffff:ffff::', mac: '00:00:00:00:00:00', cidr: null, scopeid: 0 });

test('remoteJoinEndpoint: a coordinator bound to every interface tells remote workers a reachable address, not 127.0.0.1', () => {
  // New-user tryout: `coordinator --bind tcp://0.0.0.0:5555 --workers 0 --expect 4` printed "start 4 more worker(s),
  // here or on other machines, with: npx worker --connect tcp://127.0.0.1:5555 …", which no other machine reaches.
  const nets = { lo: [nic('127.0.0.1', 'IPv4', true)], eth0: [nic('fe80::1', 'IPv6', false), nic('10.0.0.5', 'IPv4', false)] };
  assert.equal(remoteJoinEndpoint('tcp://0.0.0.0:5555', 'tcp://127.0.0.1:5555', nets), 'tcp://10.0.0.5:5555');
  assert.equal(remoteJoinEndpoint('tcp://*:0', 'tcp://127.0.0.1:40211', nets), 'tcp://10.0.0.5:40211');
  // No address but loopback: a placeholder to fill in, never 127.0.0.1 as if it were reachable.
  assert.equal(remoteJoinEndpoint('tcp://0.0.0.0:5555', 'tcp://127.0.0.1:5555', { lo: [nic('127.0.0.1', 'IPv4', true)] }),
    "tcp://<this host's address>:5555");
  // A specific address (the default loopback, or a host's own IP) is what workers connect to, unchanged.
  assert.equal(remoteJoinEndpoint('tcp://127.0.0.1:5555', 'tcp://127.0.0.1:5555', nets), 'tcp://127.0.0.1:5555');
  assert.equal(remoteJoinEndpoint('tcp://10.0.0.7:5555', 'tcp://10.0.0.7:5555', nets), 'tcp://10.0.0.7:5555');
});
