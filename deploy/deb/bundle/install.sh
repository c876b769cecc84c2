#!/bin/sh
# yunwei offline installer: checks SHA256SUMS, then installs the packages with dpkg (no network).
#   ./install.sh agent            the agent (every monitored host)
#   ./install.sh server           the server
#   ./install.sh server agent     both
set -eu
cd "$(dirname "$0")"

if [ $# -eq 0 ]; then
    echo "用法 / usage: $0 agent | server | server agent" >&2
    exit 2
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "需要 root 权限 / must run as root" >&2
    exit 1
fi

# Every file in the bundle against its checksum; a changed or missing file stops here.
if ! sha256sum --check --strict --quiet SHA256SUMS; then
    echo "校验失败，未安装任何软件包 / checksum mismatch: nothing installed" >&2
    exit 1
fi

arch=$(dpkg --print-architecture)
debs=
for what in "$@"; do
    case "$what" in
    server|agent) ;;
    *) echo "未知组件 / unknown component: $what (agent | server)" >&2; exit 2 ;;
    esac
    deb=
    for f in yunwei-"$what"_*_"$arch".deb; do
        [ -f "$f" ] && deb=$f
    done
    if [ -z "$deb" ]; then
        echo "本包中没有 $arch 架构的 yunwei-$what / no yunwei-$what for $arch in this bundle" >&2
        exit 1
    fi
    debs="$debs $deb"
done

# shellcheck disable=SC2086 # the file names have no spaces
if ! dpkg -i $debs; then
    echo "dpkg 安装失败（缺少依赖包？请从安装介质安装后重试）" >&2
    echo "dpkg failed (missing dependencies? install them from the installation media and retry)" >&2
    exit 1
fi
echo "已安装 / installed:$debs"
echo "下一步见 / next: /usr/share/doc/yunwei-*/README.Debian"
