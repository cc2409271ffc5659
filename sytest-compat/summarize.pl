#!/usr/bin/env perl
# sytest-compat/summarize.pl - turn a SyTest run (TAP on stdout, progress on
# stderr) into a per-directory summary, compare it with passing.txt and
# optionally update passing.txt. Called by run.sh; can be re-run by hand:
#
#   perl sytest-compat/summarize.pl --tap results/tap.txt --log results/sytest.log \
#        [--sytest SYTEST_DIR] [--passing passing.txt [--update-passing]] [--tsv FILE]
#
# Prints the summary on stdout. Exit status 1 when a test in passing.txt ran
# and did not pass, or when SyTest did not finish its run; 0 otherwise.
use strict;
use warnings;
use Getopt::Long;
use POSIX qw( strftime );

my %o = ( 'sytest-exit' => '?', elapsed => '?', commit => 'unknown', 'sytest-commit' => 'unknown' );
GetOptions( \%o, 'tap=s', 'log=s', 'sytest=s', 'passing=s', 'tsv=s', 'update-passing',
   'command=s', 'commit=s', 'sytest-commit=s', 'elapsed=s', 'sytest-exit=s' )
   and $o{tap} or die "usage: $0 --tap TAP [--log LOG] [--sytest DIR] [--passing FILE [--update-passing]]\n";

# --- test number -> file, from SyTest's progress output -------------------
my %file_of;
if( $o{log} and open my $fh, "<", $o{log} ) {
   my $file;
   while( <$fh> ) {
      s/\e\[[0-9;]*m//g;
      if( m{^(tests/\S+\.pl):$} ) { $file = $1; next }
      $file_of{$1} = $file if defined $file and m/^\s+Test (\d+) /;
   }
}

# --- the TAP --------------------------------------------------------------
my ( @tests, $plan );
{
   open my $fh, "<", $o{tap} or die "cannot read $o{tap}: $!\n";
   my $cur;
   while( <$fh> ) {
      chomp;
      if( m/^1\.\.(\d+)$/ ) { $plan = $1; next }
      if( m/^(not ok|ok) (\d+) (.*)$/ ) {
         my ( $ok, $num, $rest ) = ( $1 eq "ok", $2, $3 );
         my $status;
         if( $rest =~ s/ # skip( .*)?$// ) {
            $status = "skip";
            $cur = undef;
         }
         elsif( $rest =~ s/^\(expected fail\) // ) {
            $rest =~ s/ # TODO .*$//;
            $status = "xfail";
         }
         else {
            $status = $ok ? "pass" : "fail";
         }
         $rest =~ s/ \(\d+ subtests\)$// if $ok;
         push @tests, $cur = { num => $num, name => $rest, status => $status, why => [] };
         next;
      }
      next unless $cur and $cur->{status} ne "pass";
      next if m/^\s/;          # sub-test lines of a multi-test
      if( m/^# (.*)$/ ) {
         my $l = $1;
         next if $l =~ m/^(Started|Ended): |^Killing process |^Timed out waiting for \S+; sending SIGKILL/;
         push @{ $cur->{why} }, $l if @{ $cur->{why} } < 3;
      }
   }
}

# --- names without a file: find them in SyTest's tests/ -------------------
my @unmapped = grep { !$file_of{ $_->{num} } } @tests;
if( @unmapped and $o{sytest} and -d "$o{sytest}/tests" ) {
   my %src;
   my @dirs = ( "$o{sytest}/tests" );
   while( my $d = shift @dirs ) {
      opendir my $dh, $d or next;
      for my $e ( sort grep { !/^\./ } readdir $dh ) {
         my $p = "$d/$e";
         if( -d $p ) { push @dirs, $p }
         elsif( $p =~ m/\.pl$/ and open my $fh, "<", $p ) {
            local $/; ( my $rel = $p ) =~ s{^\Q$o{sytest}\E/}{}; $src{$rel} = <$fh>;
         }
      }
   }
   for my $t ( @unmapped ) {
      my ( $f ) = grep { index( $src{$_}, $t->{name} ) >= 0 } sort keys %src;
      $file_of{ $t->{num} } = $f if $f;
   }
}

for my $t ( @tests ) {
   my $f = $file_of{ $t->{num} } // "unknown";
   $t->{file} = $f;
   $t->{dir} = $f =~ m{^tests/([^/]+)/} ? $1 : $f =~ m{^tests/([^/]+)\.pl$} ? $1 : "unknown";
}

# --- per directory --------------------------------------------------------
my ( %by_dir, %total );
for my $t ( @tests ) {
   $by_dir{ $t->{dir} }{ $t->{status} }++;
   $by_dir{ $t->{dir} }{all}++;
   $total{ $t->{status} }++;
   $total{all}++;
}

# A name can occur more than once: it passed if every occurrence passed.
my %name_passed;
for my $t ( @tests ) {
   my $p = $t->{status} eq "pass";
   $name_passed{ $t->{name} } = exists $name_passed{ $t->{name} } ? ( $name_passed{ $t->{name} } && $p ) : $p;
}

my @out;
push @out, "SyTest against auralink (implementation 'auralink')";
push @out, sprintf "date: %s  auralink %s  SyTest %s  %s s  run-tests.pl exit %s",
   strftime( "%Y-%m-%d %H:%M", localtime ), $o{commit}, $o{'sytest-commit'}, $o{elapsed}, $o{'sytest-exit'};
push @out, "command: $o{command}" if $o{command};
push @out, "";
my $fmt = "%-20s %7s %7s %7s %7s %7s\n";
push @out, sprintf( $fmt, "directory", "passed", "failed", "xfail", "skipped", "total" ) =~ s/\n$//r;
for my $d ( sort keys %by_dir ) {
   my $c = $by_dir{$d};
   push @out, sprintf( $fmt, $d, map { $c->{$_} // 0 } qw( pass fail xfail skip all ) ) =~ s/\n$//r;
}
push @out, sprintf( $fmt, "TOTAL", map { $total{$_} // 0 } qw( pass fail xfail skip all ) ) =~ s/\n$//r;
my $all = $total{all} // 0;
push @out, "";
push @out, sprintf "passed %d / %d (%.1f %%)", $total{pass} // 0, $all, $all ? 100 * ( $total{pass} // 0 ) / $all : 0;

my $rc = 0;
if( !defined $plan ) {
   push @out, "WARNING: SyTest did not finish the run (no TAP plan line; see results/sytest.log)";
   $rc = 1;
}

my @failed = grep { $_->{status} eq "fail" } @tests;
if( @failed ) {
   push @out, "", "failed (" . scalar( @failed ) . "):";
   for my $t ( @failed ) {
      push @out, "  [$t->{file}] $t->{name}";
      push @out, map { "      $_" } @{ $t->{why} };
   }
}

# --- passing.txt ----------------------------------------------------------
if( $o{passing} ) {
   my @listed;
   if( open my $fh, "<", $o{passing} ) {
      @listed = grep { length } map { s/\s+$//r } <$fh>;
   }
   my @regressions = grep { exists $name_passed{$_} and !$name_passed{$_} } @listed;
   my $ran = grep { exists $name_passed{$_} } @listed;
   push @out, "";
   if( @regressions and $o{'update-passing'} ) {
      push @out, "dropped from passing.txt (" . scalar( @regressions ) . " tests that no longer pass):";
      push @out, map { "  dropped: $_" } @regressions;
   }
   elsif( @regressions ) {
      push @out, "REGRESSIONS (" . scalar( @regressions ) . " tests in passing.txt did not pass):";
      push @out, map { "  REGRESSION: $_" } @regressions;
      $rc = 1;
   }
   else {
      push @out, sprintf "no regressions: %d of the %d tests in passing.txt ran, all passed", $ran, scalar @listed;
   }
   my %listed = map { $_ => 1 } @listed;
   my @new = sort grep { $name_passed{$_} and !$listed{$_} } keys %name_passed;
   push @out, "newly passing, not yet in passing.txt (" . scalar( @new ) . "): run with --update-passing"
      if @new and !$o{'update-passing'};

   if( $o{'update-passing'} ) {
      my %keep = map { $_ => 1 } grep { !exists $name_passed{$_} } @listed;   # not run: keep
      $keep{$_} = 1 for grep { $name_passed{$_} } keys %name_passed;
      open my $fh, ">", $o{passing} or die "cannot write $o{passing}: $!\n";
      print $fh "$_\n" for sort keys %keep;
      close $fh;
      push @out, "passing.txt updated: " . scalar( keys %keep ) . " tests";
   }
}

if( $o{tsv} and open my $fh, ">", $o{tsv} ) {
   print $fh join( "\t", $_->{status}, $_->{dir}, $_->{file}, $_->{name} ), "\n" for @tests;
}

print "$_\n" for @out;
exit $rc;
