# The current realm's applications and icons for login shells and sessions without systemd's
# environment.d (the package installs it in /etc/profile.d/).
case ":${XDG_DATA_DIRS:-}:" in
  *:/run/realms/desktop:*) ;;
  *) export XDG_DATA_DIRS="${XDG_DATA_DIRS:-/usr/local/share:/usr/share}:/run/realms/desktop" ;;
esac
