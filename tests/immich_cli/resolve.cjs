// Test-only preload: resolves IMMICH_TEST_RESOLVE ("name=address") like curl's --resolve, so the
// real Immich CLI on the Docker host reaches the proxy's container under the public host name.
'use strict';
const dns = require('node:dns');
const [name, address] = (process.env.IMMICH_TEST_RESOLVE || '').split('=');
const lookup = dns.lookup;
dns.lookup = function (hostname, options, callback) {
  if (typeof options === 'function') {
    callback = options;
    options = {};
  }
  if (name && hostname === name) {
    const family = address.includes(':') ? 6 : 4;
    if (options && options.all) {
      return process.nextTick(callback, null, [{ address, family }]);
    }
    return process.nextTick(callback, null, address, family);
  }
  return lookup.call(this, hostname, options, callback);
};
