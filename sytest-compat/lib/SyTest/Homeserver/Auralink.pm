# SyTest homeserver driver for auralink's auralinkd.
#
# Part of auralink's sytest-compat glue (written for auralink, not taken
# from SyTest). Each instance gets:
#   - a database of its own in one private PostgreSQL cluster per SyTest run
#     (AURALINK_PGHOST, or a cluster this module starts under the work
#     directory with scripts/lib.sh and stops at the end of the run); the
#     database is dropped when the server is killed and, should a run have
#     been interrupted, at the start of the next one;
#   - a TLS certificate signed by SyTest's CA (keys/ca.crt), which it also
#     trusts for outbound federation;
#   - a client port (plain HTTP) and a federation port (HTTPS) from SyTest's
#     port allocator; server_name is "<bind host>:<federation port>";
#   - open registration, no rate limits, loopback federation, cheap argon2.
# Its config, signing key and log (auralinkd.log) live in hs_dir.

use strict;
use warnings;

package SyTest::Homeserver::Auralink;
use base qw( SyTest::Homeserver );

use Carp;
use Cwd qw( abs_path getcwd );
use File::Basename qw( dirname );
use Future;
use SyTest::SSL qw( ensure_ssl_key create_ssl_cert );

# The auralink checkout this file belongs to:
# <root>/sytest-compat/lib/SyTest/Homeserver/Auralink.pm
my $CHECKOUT_ROOT = abs_path( dirname( abs_path( __FILE__ ) ) . "/../../../.." );

# One PostgreSQL cluster per SyTest run, shared by the instances.
my $PG_SOCKET;     # socket directory once known
my $PG_STATE;      # set when this module started the cluster itself

sub _init
{
   my $self = shift;
   my ( $args ) = @_;

   my $root = delete $args->{auralink_root};
   my $bin  = delete $args->{auralink_binary};

   $root //= $ENV{AURALINK_ROOT} // $CHECKOUT_ROOT;
   $bin  //= $ENV{AURALINK_BIN} // "$root/build/auralinkd";

   -x $bin or croak "auralinkd not found or not executable at $bin " .
      "(build it, or pass --auralink-binary / set AURALINK_BIN)";
   -f "$root/scripts/lib.sh" or croak "no scripts/lib.sh under $root (pass --auralink-root)";

   $self->{auralink_root} = $root;
   $self->{auralink_bin}  = abs_path( $bin );
   $self->{sql_dir}       = $ENV{AURALINK_SQL_DIR} // "$root/sql";

   $self->SUPER::_init( $args );

   my $idx = $self->{hs_index};
   $self->{ports} = {
      client     => main::alloc_port( "auralink[$idx].client" ),
      federation => main::alloc_port( "auralink[$idx].federation" ),
   };
   $self->{dbname} = "sytest_hs$idx";
}

sub server_name
{
   my $self = shift;
   return "$self->{bind_host}:$self->{ports}{federation}";
}

sub public_baseurl
{
   my $self = shift;
   return "http://$self->{bind_host}:$self->{ports}{client}";
}

sub federation_host
{
   my $self = shift;
   return $self->{bind_host};
}

sub federation_port
{
   my $self = shift;
   return $self->{ports}{federation};
}

# Run a function of scripts/lib.sh synchronously; returns its stdout.
sub _lib_sh
{
   my $self = shift;
   my ( $func, @args ) = @_;

   my $lib = "$self->{auralink_root}/scripts/lib.sh";
   open my $fh, "-|", "bash", "-c", '. "$0" && "$@"', $lib, $func, @args
      or die "cannot run bash: $!\n";
   local $/;
   my $out = <$fh> // "";
   close $fh or die "$func @args failed (exit status " . ( $? >> 8 ) . ")\n";
   return $out;
}

sub _pg_socket
{
   my $self = shift;

   return $PG_SOCKET if defined $PG_SOCKET;

   if( defined $ENV{AURALINK_PGHOST} and length $ENV{AURALINK_PGHOST} ) {
      return $PG_SOCKET = $ENV{AURALINK_PGHOST};
   }

   # Start a cluster of our own under the work directory (a directory the
   # postgres user cannot enter is handled by lib.sh: it moves the cluster
   # under /var/tmp and links it).
   my $state = abs_path( dirname( $self->{hs_dir} ) ) . "/auralink-pg";
   -d $state or mkdir $state or die "cannot mkdir $state: $!\n";
   chmod 0755, $state;

   $self->{output}->diag( "Starting PostgreSQL for auralink in $state" );
   my $out = $self->_lib_sh( al_pg_start => $state );
   my ( $sock ) = $out =~ m/(\S+)\s*\z/ or die "al_pg_start printed no socket directory\n";

   $PG_STATE = $state;
   my $root = $self->{auralink_root};
   # Registered after tests/05homeserver.pl's hook, so it runs after the
   # servers have been killed.
   main::AT_END( sub {
      system( "bash", "-c", '. "$0" && al_pg_stop "$1"', "$root/scripts/lib.sh", $PG_STATE );
   } );

   return $PG_SOCKET = $sock;
}

sub _psql
{
   my $self = shift;
   my ( $sql ) = @_;

   local $ENV{PGOPTIONS} = "-c client_min_messages=warning";
   system( "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", $self->_pg_socket,
      "-U", "postgres", "-d", "postgres", "-c", $sql ) == 0
      or die "psql failed: $sql\n";
}

sub _reset_database
{
   my $self = shift;
   my $db = $self->{dbname};
   $self->_psql( qq(DROP DATABASE IF EXISTS "$db" WITH (FORCE)) );
   $self->_psql( qq(CREATE DATABASE "$db") );
}

sub _drop_database
{
   my $self = shift;
   return unless $self->{db_created};
   my $db = $self->{dbname};
   eval { $self->_psql( qq(DROP DATABASE IF EXISTS "$db" WITH (FORCE)) ); 1 }
      or warn "auralink: could not drop database $db: $@";
   $self->{db_created} = 0;
}

sub _conf_string
{
   my ( $s ) = @_;
   $s =~ s/(["\\])/\\$1/g;
   return qq("$s");
}

sub _write_config
{
   my $self = shift;

   my $hs_dir = $self->{hs_dir};
   my $bind = $self->{bind_host} eq "localhost" ? "127.0.0.1" : $self->{bind_host};
   my $q = \&_conf_string;

   # SyTest's CA; create_ssl_cert needs the SyTest directory as cwd too.
   my $ca = getcwd() . "/keys/ca.crt";
   my $conninfo = "host=$self->{pg_socket} dbname=$self->{dbname} user=postgres";

   my $conf = <<"CONF";
# Written by sytest-compat (SyTest plugin Auralink) for server-$self->{hs_index}.
server_name = ${\ $q->( $self->server_name ) };
public_baseurl = ${\ $q->( $self->public_baseurl ) };
listeners = {
  client = { bind = ${\ $q->( $bind ) }; port = $self->{ports}{client}; };
  federation = {
    bind = ${\ $q->( $bind ) };
    port = $self->{ports}{federation};
    tls_certificate = ${\ $q->( "$hs_dir/tls.crt" ) };
    tls_private_key = ${\ $q->( "$hs_dir/tls.key" ) };
  };
};
database = {
  conninfo = ${\ $q->( $conninfo ) };
  migrations_dir = ${\ $q->( $self->{sql_dir} ) };
};
signing_key_path = ${\ $q->( "$hs_dir/signing.key" ) };
worker_threads = 2;
log_level = "info";
registration = { enabled = true; allow_guests = true; };
passwords = { argon2_ops_limit = 1; argon2_mem_limit_kib = 8192; };
limits = { rate_per_second = 0.0; };
# SyTest computes event IDs with the redaction rules before room version
# 11, as Synapse's default rooms (version 10) need.
rooms = { default_room_version = "10"; };
federation = {
  verify_tls = true;
  ca_file = ${\ $q->( $ca ) };
  allow_loopback = true;
};
CONF

   return $self->write_file( "auralinkd.conf" => $conf );
}

sub _env
{
   my %env = ( PATH => $ENV{PATH} // "/usr/local/bin:/usr/bin:/bin" );
   # Pass through what a sanitizer build or a locale needs, nothing else
   # (DATABASE_URL would override the config's database).
   for ( qw( HOME LANG LC_ALL TZ ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS ) ) {
      $env{$_} = $ENV{$_} if defined $ENV{$_};
   }
   return \%env;
}

sub _log_tail
{
   my $self = shift;
   my $log = "$self->{hs_dir}/auralinkd.log";
   open my $fh, "<", $log or return "";
   my @lines = <$fh>;
   splice @lines, 0, -20;
   return join "", map { "   | $_" } @lines;
}

sub start
{
   my $self = shift;

   my $hs_dir = $self->{hs_dir};
   my $idx = $self->{hs_index};
   my $output = $self->{output};

   my $conf = eval {
      # openssl's chatter goes to hs_dir/openssl.log, not the terminal.
      open my $saved_stderr, ">&", \*STDERR or die "cannot dup STDERR: $!\n";
      open STDERR, ">>", "$hs_dir/openssl.log" or die "cannot open $hs_dir/openssl.log: $!\n";
      my $ok = eval {
         ensure_ssl_key( "$hs_dir/tls.key" );
         create_ssl_cert( "$hs_dir/tls.crt", "$hs_dir/tls.key", $self->{bind_host} );
         1;
      };
      my $err = $@;
      open STDERR, ">&", $saved_stderr;
      $ok or die "TLS certificate (see $hs_dir/openssl.log): $err";

      $self->{pg_socket} = $self->_pg_socket;
      $self->_reset_database;
      $self->{db_created} = 1;

      # A fresh server: no signing key or log left over from an earlier run.
      unlink "$hs_dir/signing.key", "$hs_dir/auralinkd.log";

      $self->_write_config;
   } or return Future->fail( "auralink set-up failed: $@" );

   my $bin = $self->{auralink_bin};
   my $env = $self->_env;

   $output->diag( "Starting auralinkd for server-$idx: $bin --config $conf" );

   return $self->_run_command(
      command => [ $bin, "--config", $conf, "--generate-keys" ],
      setup   => [ env => $env ],
   )->then( sub {
      $self->_start_process_and_await_connectable(
         # auralinkd logs to stderr; keep the whole log in hs_dir.
         command => [ "/bin/sh", "-c", 'exec "$0" --config "$1" >>"$2" 2>&1',
                      $bin, $conf, "$hs_dir/auralinkd.log" ],
         setup   => [ env => $env ],
         connect_host => $self->{bind_host},
         connect_port => $self->{ports}{client},
         name => "auralinkd-$idx",
      );
   })->else( sub {
      my ( $failure ) = @_;
      chomp $failure;
      Future->fail( "auralinkd did not start: $failure\n" .
         "last lines of $hs_dir/auralinkd.log:\n" . $self->_log_tail );
   })->on_done( sub {
      $output->diag( "auralinkd server-$idx listening: client " .
         $self->public_baseurl . ", federation https://" . $self->server_name );
   });
}

sub kill_and_await_finish
{
   my $self = shift;

   return $self->SUPER::kill_and_await_finish( @_ )->then( sub {
      $self->_drop_database;
      Future->done;
   });
}

1;
