# The current realm's applications and icons for login shells and sessions without systemd's
# environment.d. Install: copy to /etc/profile.d/.
case ":${XDG_DATA_DIRS:-}:" in
  *:/run/realms/desktop:*) ;;
  *) export XDG_DATA_DIRS="${XDG_DATA_DIRS:-/usr/local/share:/usr/share}:/run/realms/desktop" ;;
esac
