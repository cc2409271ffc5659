# SyTest homeserver factory for auralink: run-tests.pl -I Auralink.
#
# Part of auralink's sytest-compat glue (written for auralink, not taken
# from SyTest). sytest-compat/run.sh is the usual way to use it.

use strict;
use warnings;

require SyTest::Homeserver::Auralink;

use Cwd ();
use File::Path ();

package SyTest::HomeserverFactory::Auralink;
use base qw( SyTest::HomeserverFactory );

sub _init
{
   my $self = shift;

   # undef: SyTest::Homeserver::Auralink resolves the defaults (environment
   # variables, then paths relative to the checkout this plugin lives in).
   $self->{args} = {
      auralink_binary => undef,
      auralink_root   => undef,
   };

   $self->SUPER::_init( @_ );
}

sub implementation_name
{
   return "auralink";
}

sub get_options
{
   my $self = shift;

   return (
      'auralink-binary=s' => \$self->{args}{auralink_binary},
      'auralink-root=s'   => \$self->{args}{auralink_root},
      $self->SUPER::get_options(),
   );
}

sub print_usage
{
   print STDERR <<'USAGE';
   --auralink-binary PATH   - the auralinkd binary (default: $AURALINK_BIN,
                              else <auralink checkout>/build/auralinkd)
   --auralink-root DIR      - the auralink checkout, for scripts/lib.sh and
                              sql/ (default: $AURALINK_ROOT, else the checkout
                              this plugin lives in)
   Environment: AURALINK_PGHOST - socket directory of a running PostgreSQL
   cluster (default: the plugin starts one under the work directory);
   AURALINK_SQL_DIR - the migrations directory (default: <checkout>/sql).
USAGE
}

sub create_server
{
   my $self = shift;
   my %params = ( @_, %{ $self->{args} } );

   # tests/05homeserver.pl passes abs_path("$WORK_DIR/server-N"), which is
   # undef while the work directory does not exist yet.
   if( !defined $params{hs_dir} ) {
      my $dir = "$main::WORK_DIR/server-$params{hs_index}";
      File::Path::make_path( $dir );
      $params{hs_dir} = Cwd::abs_path( $dir );
   }

   return SyTest::Homeserver::Auralink->new( %params );
}

1;
