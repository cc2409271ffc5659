#include "unit.h"
#include <stdlib.h>
#include <string.h>

#include "config.h"

#define BASE                                                                                           \
	"server_name = \"a.test\"; database = { conninfo = \"dbname=x\"; }; signing_key_path = \"k\";" \
	" listeners = { federation = { tls_certificate = \"c\"; tls_private_key = \"p\"; }; };"

static char err[512];

START_TEST(defaults)
{
	struct al_config c;
	unsetenv("DATABASE_URL");
	ck_assert_int_eq(config_load_string(BASE, &c, err, sizeof(err)), 0);
	ck_assert_str_eq(c.server_name, "a.test");
	ck_assert_int_eq(c.client.port, 8008);
	ck_assert_int_eq(c.federation.port, 8448);
	ck_assert_int_eq(c.worker_threads, 2);
	ck_assert(!c.registration_enabled);
	ck_assert(c.fed_verify_tls);
	ck_assert(!c.fed_allow_loopback);
	ck_assert_uint_eq(c.max_body_bytes, 65536);
	ck_assert_str_eq(c.well_known_server, "a.test");
	ck_assert_str_eq(c.public_baseurl, "http://localhost:8008");
	ck_assert_int_eq(c.fed_clock_skew_ms, 300000);
	ck_assert_int_eq(c.fed_key_refetch_interval_s, 30);
	ck_assert_int_eq(c.fed_health_interval_s, 60);
	ck_assert_int_eq(c.fed_connect_to.count, 0);
	config_free(&c);
}
END_TEST

START_TEST(lists_and_overrides)
{
	struct al_config c;
	setenv("DATABASE_URL", "postgresql:///other", 1);
	ck_assert_int_eq(config_load_string(BASE
					    " admins = [\"@a:a.test\", \"@b:a.test\"];"
					    " federation = { blacklist = [\"evil.test\"]; whitelist_only = true; };"
					    " limits = { rate_per_second = 2; };",
					    &c, err, sizeof(err)),
			 0);
	ck_assert_str_eq(c.conninfo, "postgresql:///other");
	ck_assert_int_eq(c.admins.count, 2);
	ck_assert(config_list_contains(&c.admins, "@b:a.test"));
	ck_assert(!config_list_contains(&c.admins, "@c:a.test"));
	ck_assert(config_list_contains(&c.fed_blacklist, "evil.test"));
	ck_assert(c.fed_whitelist_only);
	ck_assert(c.rate_per_second == 2.0);
	config_free(&c);
	ck_assert_int_eq(
		config_load_string(BASE " federation = { clock_skew_ms = 1000; health_interval_seconds = 1;"
					" key_refetch_interval_seconds = 0;"
					" connect_to = [\"a.test:443:127.0.0.1:8443\", \"b.test:8448:[::1]:9448\"]; };",
				   &c, err, sizeof(err)),
		0);
	ck_assert_int_eq(c.fed_clock_skew_ms, 1000);
	ck_assert_int_eq(c.fed_health_interval_s, 1);
	ck_assert_int_eq(c.fed_key_refetch_interval_s, 0);
	ck_assert_int_eq(c.fed_connect_to.count, 2);
	config_free(&c);
	unsetenv("DATABASE_URL");
}
END_TEST

static void expect_error(const char *text, const char *setting)
{
	struct al_config c;
	ck_assert_int_eq(config_load_string(text, &c, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, setting) != NULL, "error '%s' does not name %s", err, setting);
	ck_assert_ptr_null(strchr(err, '\n'));
}

START_TEST(errors_name_the_setting)
{
	unsetenv("DATABASE_URL");
	expect_error("", "server_name");
	expect_error("server_name = 5;", "server_name");
	expect_error(BASE " worker_threads = 100;", "worker_threads");
	expect_error(BASE " registration = { enabled = \"yes\"; };", "registration.enabled");
	expect_error(BASE " admins = \"@a:b\";", "admins");
	expect_error(BASE " admins = [\"\"];", "admins");
	expect_error(BASE " limits = { max_json_depth = 1000; };", "limits.max_json_depth");
	expect_error(BASE " limits = { rate_per_second = \"x\"; };", "limits.rate_per_second");
	expect_error("server_name = ", "line");
	expect_error("server_name = \"a b\";", "server_name");
	expect_error(BASE " federation = { clock_skew_ms = -1; };", "federation.clock_skew_ms");
	expect_error(BASE " federation = { health_interval_seconds = 0; };", "federation.health_interval_seconds");
	expect_error(BASE " federation = { whitelist = [\"a b\"]; };", "federation.whitelist");
	expect_error(BASE " federation = { whitelist = [\"x.test\"]; blacklist = [\"X.test\"]; };",
		     "federation.blacklist");
	expect_error(BASE " federation = { connect_to = [\"a.test:443\"]; };", "federation.connect_to");
}
END_TEST

START_TEST(federation_listener_off_needs_no_tls)
{
	struct al_config c;
	ck_assert_int_eq(
		config_load_string("server_name = \"a.test\"; database = { conninfo = \"x\"; };"
				   " signing_key_path = \"k\"; listeners = { federation = { enabled = false; }; };",
				   &c, err, sizeof(err)),
		0);
	ck_assert(!c.federation.enabled);
	config_free(&c);
}
END_TEST

UNIT_MAIN("config", defaults, lists_and_overrides, errors_name_the_setting, federation_listener_off_needs_no_tls)
