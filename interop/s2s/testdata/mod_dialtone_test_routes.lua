-- Test-only Prosody module: connects to the listed domains at fixed
-- addresses instead of asking DNS (Prosody's own resolver reads neither
-- /etc/hosts nor static routes). Used by interop/s2s.
--
--   dialtone_test_routes = { ["dialtone.test"] = { "127.0.0.4", 5269 } }
local service = require "net.resolvers.service";
local basic = require "net.resolvers.basic";

local routes = module:get_option("dialtone_test_routes", {});
local original = service.new;

service.new = function (hostname, svc, conn_type, extra)
	local r = routes[hostname];
	if r then
		module:log("debug", "static route for %s: %s:%d", hostname, r[1], r[2]);
		return basic.new(r[1], r[2], conn_type, extra);
	end
	return original(hostname, svc, conn_type, extra);
end

function module.unload()
	service.new = original;
end
