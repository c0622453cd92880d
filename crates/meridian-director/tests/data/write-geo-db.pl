#!/usr/bin/perl
# Writes a MaxMind-format database (GeoIP2 City layout: continent.code, country.iso_code,
# location.latitude/longitude) with Debian's libmaxmind-db-writer-perl.
#
#   write-geo-db.pl OUT.mmdb < networks
#
# Each input line: CIDR CONTINENT COUNTRY [LAT LON]; `-` leaves a field out; `#` starts a comment.
use strict;
use warnings;
use MaxMind::DB::Writer::Tree;

my $out = shift @ARGV or die "usage: $0 OUT.mmdb < networks\n";
my %types = (
    continent => 'map',
    code      => 'utf8_string',
    country   => 'map',
    iso_code  => 'utf8_string',
    location  => 'map',
    latitude  => 'double',
    longitude => 'double',
);
my $tree = MaxMind::DB::Writer::Tree->new(
    ip_version               => 6,
    record_size              => 28,
    database_type            => 'Meridian-Test-City',
    languages                => ['en'],
    description              => { en => 'Meridian test geo database' },
    remove_reserved_networks => 0,
    alias_ipv6_to_ipv4       => 1,
    map_key_type_callback    => sub { $types{ $_[0] } // die "no type for key $_[0]\n" },
);
while (my $line = <STDIN>) {
    $line =~ s/#.*//;
    my ($cidr, $continent, $country, $lat, $lon) = split ' ', $line;
    next unless defined $cidr;
    my %record;
    $record{continent} = { code => $continent } if defined $continent && $continent ne '-';
    $record{country} = { iso_code => $country } if defined $country && $country ne '-';
    $record{location} = { latitude => 0 + $lat, longitude => 0 + $lon } if defined $lon;
    $tree->insert_network($cidr, \%record);
}
open my $fh, '>:raw', $out or die "$out: $!\n";
$tree->write_tree($fh);
close $fh or die "$out: $!\n";
